"""The simulator's price process: parameters per symbol, the step's moments, the IV term."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from market.feeds.sim_process import (
    DRIFT,
    draw_params,
    expected_average_variance,
    step,
)

SYMBOLS = ("AAPL", "SPY", "ZZZQ", "NEWCO")


def test_parameters_depend_on_seed_and_name_not_on_the_universe() -> None:
    alone = draw_params(("ZZZQ",), seed=5)
    among = draw_params(SYMBOLS, seed=5)
    other_seed = draw_params(("ZZZQ",), seed=6)

    assert alone.spot[0] == among.spot[2]
    assert alone.theta[0] == among.theta[2]
    assert alone.spot[0] != other_seed.spot[0]


def test_parameters_are_in_their_model_ranges() -> None:
    params = draw_params(SYMBOLS, seed=1)

    assert params.activity.sum() == pytest.approx(1.0)
    assert np.all(params.theta > 0)
    assert np.all((params.rho < 0) & (params.rho > -1))
    assert np.all((params.beta > 0) & (params.beta < 1))
    # lambda * E[e^J - 1] for normal log jumps
    expected = params.jump_intensity * (np.exp(params.jump_mean + params.jump_std**2 / 2) - 1)
    np.testing.assert_allclose(params.jump_compensator, expected)


def test_steps_without_jumps_have_the_drift_and_variance_of_the_model() -> None:
    params = draw_params(("AAPL",), seed=2)
    params.jump_intensity[:] = 0.0
    params.xi[:] = 0.0  # constant variance: the return is normal with known moments
    params.variance[:] = params.theta
    rng = np.random.default_rng(0)
    dt, n = 1 / 252 / 390, 20_000
    log_spot, variance = np.log(params.spot), params.variance.copy()
    returns = np.array([step(params, log_spot, variance, dt, rng).log_return[0]
                        for _ in range(n)])

    v = params.theta[0]
    assert returns.std() == pytest.approx(np.sqrt(v * dt), rel=0.03)
    assert returns.mean() == pytest.approx((DRIFT - v / 2) * dt, abs=4 * np.sqrt(v * dt / n))
    assert log_spot[0] == pytest.approx(np.log(params.spot[0]) + returns.sum())


def test_variance_never_falls_below_its_floor() -> None:
    params = draw_params(SYMBOLS, seed=3)
    params.xi[:] = 5.0  # violent variance moves
    rng = np.random.default_rng(1)
    log_spot, variance = np.log(params.spot), params.variance.copy()
    for _ in range(500):
        step(params, log_spot, variance, 1 / 252, rng)
        assert np.all(variance >= 0.01 * params.theta - 1e-15)


@pytest.mark.parametrize(("v0", "years"), [(0.09, 0.01), (0.02, 0.25), (0.2, 1.5)])
def test_expected_average_variance_is_the_mean_of_the_mean_reverting_path(v0: float,
                                                                           years: float) -> None:
    theta, kappa = 0.05, 3.0

    def mean_path(t: float) -> float:  # E[v_t] under dv = kappa (theta - v) dt + ...
        return theta + (v0 - theta) * np.exp(-kappa * t)

    expected = quad(mean_path, 0.0, years)[0] / years

    got = expected_average_variance(np.array([theta]), np.array([kappa]), np.array([v0]),
                                    np.array([years]))

    assert got[0] == pytest.approx(expected, rel=1e-9)


def test_expected_average_variance_at_zero_time_is_the_spot_variance() -> None:
    got = expected_average_variance(np.array([0.05]), np.array([3.0]), np.array([0.2]),
                                    np.array([0.0]))
    assert got[0] == pytest.approx(0.2, rel=1e-6)
