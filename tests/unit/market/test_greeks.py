"""market.greeks: prices and Greeks against vollib, QuantLib, published values, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql  # noqa: N813 - the library's own spelling
from vollib.black_scholes_merton import black_scholes_merton as vollib_price
from vollib.black_scholes_merton.greeks import analytical as vollib_greeks

from market.greeks import BSM_OUTPUTS, bsm_greeks, bsm_greeks_arrays, time_to_expiry


def _random_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = rng.uniform(5.0, 500.0, n)
    return {
        "is_call": rng.random(n) < 0.5,
        "S": spot,
        "K": spot * np.exp(rng.uniform(-0.8, 0.8, n)),
        "T": rng.uniform(1.0 / 365.0, 5.0, n),
        "r": rng.uniform(-0.01, 0.10, n),
        "q": rng.uniform(0.0, 0.06, n),
        "sigma": rng.uniform(0.03, 1.5, n),
    }


def _greeks(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])


def test_hull_example_matches_published_values() -> None:
    # Hull, Options Futures and Other Derivatives: S=49, K=50, r=5%, T=0.3846, sigma=20%
    g = bsm_greeks("c", 49.0, 50.0, 0.3846, 0.05, 0.0, 0.2)

    assert float(g["price"]) == pytest.approx(2.40, abs=0.005)
    assert float(g["delta"]) == pytest.approx(0.5216, abs=5e-5)
    assert float(g["gamma"]) == pytest.approx(0.0655, abs=5e-5)
    assert float(g["theta"]) * 365.0 == pytest.approx(-4.31, abs=0.005)
    assert float(g["vega"]) * 100.0 == pytest.approx(12.1, abs=0.05)
    assert float(g["rho"]) * 100.0 == pytest.approx(8.91, abs=0.005)


@pytest.mark.parametrize(
    ("flag", "args", "name", "expected", "scale"),
    [
        # Haug, The Complete Guide to Option Pricing Formulas (2nd ed.), chapter 1 and 2
        ("c", (60.0, 65.0, 0.25, 0.08, 0.0, 0.30), "price", 2.1334, 1.0),
        ("p", (100.0, 95.0, 0.5, 0.10, 0.05, 0.20), "price", 2.4648, 1.0),
        ("c", (105.0, 100.0, 0.5, 0.10, 0.10, 0.36), "delta", 0.5946, 1.0),
        ("p", (105.0, 100.0, 0.5, 0.10, 0.10, 0.36), "delta", -0.3566, 1.0),
        ("c", (55.0, 60.0, 0.75, 0.10, 0.0, 0.30), "gamma", 0.0278, 1.0),
        ("p", (430.0, 405.0, 0.0833, 0.07, 0.05, 0.20), "theta", -31.1924, 365.0),
        ("c", (72.0, 75.0, 1.0, 0.09, 0.0, 0.19), "rho", 38.7325, 100.0),
    ],
)
def test_haug_examples_match_published_values(
    flag: str, args: tuple[float, ...], name: str, expected: float, scale: float
) -> None:
    value = float(bsm_greeks(flag, *args)[name]) * scale

    assert value == pytest.approx(expected, abs=1e-4 * max(1.0, abs(expected)))


def test_random_inputs_match_vollib_within_1e9() -> None:
    x = _random_inputs(1500, seed=11)

    g = _greeks(x)

    funcs = {"price": vollib_price, "delta": vollib_greeks.delta, "gamma": vollib_greeks.gamma,
             "theta": vollib_greeks.theta, "vega": vollib_greeks.vega, "rho": vollib_greeks.rho}
    for name, func in funcs.items():
        ref = np.array([
            func("c" if c else "p", s, k, t, r, v, q)
            for c, s, k, t, r, q, v in zip(x["is_call"], x["S"], x["K"], x["T"], x["r"],
                                           x["q"], x["sigma"], strict=True)
        ])
        np.testing.assert_allclose(g[name], ref, rtol=1e-9, atol=1e-11, err_msg=name)


def _quantlib_greeks(is_call: bool, s: float, k: float, t: float, r: float, q: float,
                     v: float) -> tuple[float, ...]:
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    days = int(round(t * 365.0))
    t = days / 365.0
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, k)
    option = ql.EuropeanOption(payoff, ql.EuropeanExercise(today + days))
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(s)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), v,
                                                           day_count)))
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return (t, option.NPV(), option.delta(), option.gamma(), option.theta() / 365.0,
            option.vega() / 100.0, option.rho() / 100.0)


def test_random_inputs_match_quantlib_within_1e9() -> None:
    x = _random_inputs(300, seed=12)
    rows = [_quantlib_greeks(bool(c), s, k, t, r, q, v)
            for c, s, k, t, r, q, v in zip(x["is_call"], x["S"], x["K"], x["T"], x["r"],
                                           x["q"], x["sigma"], strict=True)]
    ref = np.array(rows)
    x["T"] = ref[:, 0]  # QuantLib works in whole days

    g = _greeks(x)

    for j, name in enumerate(BSM_OUTPUTS):
        np.testing.assert_allclose(g[name], ref[:, j + 1], rtol=1e-9, atol=1e-10, err_msg=name)


def test_put_call_parity_holds_on_random_inputs() -> None:
    x = _random_inputs(20000, seed=13)

    call = bsm_greeks("c", x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])
    put = bsm_greeks("p", x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])

    forward = x["S"] * np.exp(-x["q"] * x["T"]) - x["K"] * np.exp(-x["r"] * x["T"])
    np.testing.assert_allclose(call["price"] - put["price"], forward, rtol=0,
                               atol=1e-10 * x["S"].max())
    np.testing.assert_allclose(call["delta"] - put["delta"], np.exp(-x["q"] * x["T"]),
                               atol=1e-13)
    np.testing.assert_allclose(call["gamma"], put["gamma"], rtol=1e-13)
    np.testing.assert_allclose(call["vega"], put["vega"], rtol=1e-13)


def test_greeks_match_finite_differences_of_price() -> None:
    x = _random_inputs(2000, seed=14)
    x["T"] = np.maximum(x["T"], 0.05)
    g = _greeks(x)

    def price(**changes: np.ndarray) -> np.ndarray:
        y = {**x, **changes}
        return _greeks(y)["price"]

    h = 1e-4 * x["S"]
    delta = (price(S=x["S"] + h) - price(S=x["S"] - h)) / (2 * h)
    gamma = (price(S=x["S"] + h) - 2 * g["price"] + price(S=x["S"] - h)) / (h * h)
    vega = (price(sigma=x["sigma"] + 1e-5) - price(sigma=x["sigma"] - 1e-5)) / 2e-5 * 0.01
    rho = (price(r=x["r"] + 1e-5) - price(r=x["r"] - 1e-5)) / 2e-5 * 0.01
    theta = -(price(T=x["T"] + 1e-5) - price(T=x["T"] - 1e-5)) / 2e-5 / 365.0

    scale = x["S"]
    np.testing.assert_allclose(delta, g["delta"], atol=1e-6)
    np.testing.assert_allclose(gamma * scale, g["gamma"] * scale, atol=1e-4)
    np.testing.assert_allclose(vega / scale, g["vega"] / scale, atol=1e-8)
    np.testing.assert_allclose(rho / scale, g["rho"] / scale, atol=1e-8)
    np.testing.assert_allclose(theta / scale, g["theta"] / scale, atol=1e-8)


def test_price_increases_with_volatility() -> None:
    sigma = np.linspace(0.01, 3.0, 300)

    for flag in ("c", "p"):
        p = bsm_greeks(flag, 100.0, 110.0, 0.5, 0.03, 0.01, sigma)["price"]

        assert np.all(np.diff(p) > 0)


def test_expired_option_gives_intrinsic_and_zero_greeks() -> None:
    g = bsm_greeks(["c", "c", "p", "p", "c"], 100.0, [90.0, 110.0, 110.0, 90.0, 100.0],
                   [0.0, -1.0, 0.0, 0.0, 0.0], 0.05, 0.0, 0.2)

    np.testing.assert_array_equal(g["price"], [10.0, 0.0, 10.0, 0.0, 0.0])
    np.testing.assert_array_equal(g["delta"], [1.0, 0.0, -1.0, 0.0, 0.0])
    for name in ("gamma", "theta", "vega", "rho"):
        np.testing.assert_array_equal(g[name], 0.0)


def test_zero_volatility_gives_discounted_forward_intrinsic() -> None:
    s, k, t, r, q = 100.0, 90.0, 2.0, 0.05, 0.02

    call = bsm_greeks("c", s, k, t, r, q, 0.0)
    tiny = bsm_greeks("c", s, k, t, r, q, 1e-9)
    put = bsm_greeks("p", s, k, t, r, q, 0.0)

    expected = s * math.exp(-q * t) - k * math.exp(-r * t)
    assert float(call["price"]) == pytest.approx(expected, rel=1e-14)
    assert float(call["delta"]) == pytest.approx(math.exp(-q * t), rel=1e-14)
    for name in BSM_OUTPUTS:
        assert float(call[name]) == pytest.approx(float(tiny[name]), rel=1e-6, abs=1e-12)
        assert math.isfinite(float(put[name]))
    assert float(put["price"]) == 0.0


def test_invalid_inputs_give_nan() -> None:
    g = bsm_greeks("c", [0.0, -1.0, 100.0, 100.0, np.nan, 100.0], [100.0, 100.0, 0.0, 100.0,
                   100.0, 100.0], 1.0, 0.05, 0.0, [0.2, 0.2, 0.2, -0.1, 0.2, np.nan])

    for name in BSM_OUTPUTS:
        assert np.isnan(g[name]).all()


def test_extreme_inputs_give_finite_values() -> None:
    s = np.array([1.0, 1000.0, 100.0, 100.0, 100.0])
    k = np.array([1000.0, 1.0, 100.0, 100.0, 100.0])
    t = np.array([0.01, 0.01, 50.0, 1e-8, 30.0])
    sigma = np.array([0.1, 0.1, 3.0, 0.2, 5.0])

    for flag in ("c", "p"):
        g = bsm_greeks(flag, s, k, t, 0.05, 0.01, sigma)

        for name in BSM_OUTPUTS:
            assert np.isfinite(g[name]).all(), name
        assert (g["price"] >= 0).all()


def test_flag_forms_give_the_same_result() -> None:
    x = _random_inputs(50, seed=15)
    letters = np.where(x["is_call"], "c", "p")

    a = bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])
    b = bsm_greeks(letters, x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])
    c = bsm_greeks(np.char.upper(letters), x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])

    for name in BSM_OUTPUTS:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])


def test_unknown_flag_raises_value_error() -> None:
    with pytest.raises(ValueError, match="flag"):
        bsm_greeks(["c", "x"], 100.0, 100.0, 1.0, 0.05, 0.0, 0.2)


def test_inputs_broadcast_to_a_common_shape() -> None:
    strikes = np.array([90.0, 100.0, 110.0])[:, None]
    vols = np.array([0.1, 0.2, 0.3, 0.4])[None, :]

    g = bsm_greeks("p", 100.0, strikes, 1.0, 0.05, 0.0, vols)

    assert g["price"].shape == (3, 4)
    ref = bsm_greeks("p", 100.0, 110.0, 1.0, 0.05, 0.0, 0.3)["price"]
    assert g["price"][2, 2] == float(ref)


def test_arrays_core_matches_dict_api_and_reuses_out() -> None:
    x = _random_inputs(1000, seed=16)
    out = np.empty((6, 1000))

    result = bsm_greeks_arrays(x["is_call"], x["S"], x["K"], x["T"], 0.04, 0.01, x["sigma"],
                               out=out)

    ref = bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], 0.04, 0.01, x["sigma"])
    assert result is out
    for j, name in enumerate(BSM_OUTPUTS):
        np.testing.assert_array_equal(out[j], ref[name])


def test_time_to_expiry_counts_to_2000_utc_and_clips_at_zero() -> None:
    now = int(np.datetime64("2026-11-24T14:00:00", "ns").astype(np.int64))
    expiration = np.array(["2026-11-24", "2026-11-23", "2027-11-24", "NaT"],
                          dtype="datetime64[D]")

    years = time_to_expiry(expiration, now)

    assert years[0] == pytest.approx(6 * 3600 / (365 * 86400), rel=1e-12)
    assert years[1] == 0.0
    assert years[2] == pytest.approx((365 * 86400 + 6 * 3600) / (365 * 86400), rel=1e-12)
    assert np.isnan(years[3])
