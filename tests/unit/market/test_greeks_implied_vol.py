"""market.greeks.implied_volatility: round trips, vollib, bounds, edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from vollib.black_scholes_merton import black_scholes_merton as vollib_price
from vollib.black_scholes_merton.implied_volatility import (
    implied_volatility as vollib_implied_volatility,
)

from market.greeks import bsm_greeks, implied_volatility, implied_volatility_arrays


def _random_options(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = rng.uniform(1.0, 1000.0, n)
    return {
        "is_call": rng.random(n) < 0.5,
        "S": spot,
        "K": spot * np.exp(rng.uniform(-1.0, 1.0, n)),
        "T": np.exp(rng.uniform(np.log(1.0 / 365.0), np.log(10.0), n)),
        "r": rng.uniform(-0.01, 0.10, n),
        "q": rng.uniform(0.0, 0.08, n),
        "sigma": np.exp(rng.uniform(np.log(0.01), np.log(3.0), n)),
    }


def _well_determined(g: dict[str, np.ndarray]) -> np.ndarray:
    """Options whose price pins sigma to ~1e-11: vega large against the price's rounding."""
    vega_per_unit = g["vega"] * 100.0
    return (g["price"] > 1e-200) & (1e-14 * g["price"] < 1e-11 * vega_per_unit)


def test_round_trip_on_wide_random_inputs_recovers_sigma_within_1e10() -> None:
    x = _random_options(200_000, seed=21)
    g = bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])
    ok = _well_determined(g)

    iv = implied_volatility(g["price"], x["S"], x["K"], x["T"], x["r"], x["q"], x["is_call"])

    assert ok.mean() > 0.5
    assert np.isfinite(iv[ok]).all()
    np.testing.assert_array_less(np.abs(iv[ok] - x["sigma"][ok]), 1e-10)


def test_deep_wings_and_long_dated_options_recover_sigma() -> None:
    strikes = np.array([20.0, 40.0, 60.0, 100.0, 160.0, 250.0, 500.0])
    for flag in ("c", "p"):
        for t, sigma in ((0.02, 0.15), (1.0, 0.05), (30.0, 0.4), (2.0, 2.5)):
            g = bsm_greeks(flag, 100.0, strikes, t, 0.04, 0.02, sigma)
            ok = _well_determined(g)

            iv = implied_volatility(g["price"], 100.0, strikes, t, 0.04, 0.02, flag)

            np.testing.assert_array_less(np.abs(iv[ok] - sigma), 1e-10)


def test_random_inputs_match_vollib() -> None:
    x = _random_options(400, seed=22)
    x["sigma"] = np.clip(x["sigma"], 0.05, 1.5)
    x["T"] = np.clip(x["T"], 0.02, 5.0)
    flags = np.where(x["is_call"], "c", "p")
    prices = np.array([vollib_price(f, s, k, t, r, v, q) for f, s, k, t, r, q, v in zip(
        flags, x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], strict=True)])
    g = bsm_greeks(flags, x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"])
    ok = _well_determined(g) & (prices > 1e-8 * x["S"])

    ours = implied_volatility(prices, x["S"], x["K"], x["T"], x["r"], x["q"], flags)
    theirs = np.array([vollib_implied_volatility(p, s, k, t, r, q, f) for p, s, k, t, r, q, f
                       in zip(prices[ok], x["S"][ok], x["K"][ok], x["T"][ok], x["r"][ok],
                              x["q"][ok], flags[ok], strict=True)])

    np.testing.assert_allclose(ours[ok], theirs, rtol=1e-8)


def test_price_outside_no_arbitrage_bounds_gives_nan() -> None:
    s, k, t, r, q = 100.0, 90.0, 1.0, 0.05, 0.01
    forward_intrinsic = s * np.exp(-q * t) - k * np.exp(-r * t)

    below = implied_volatility(forward_intrinsic - 0.01, s, k, t, r, q, "c")
    at_upper = implied_volatility(s * np.exp(-q * t), s, k, t, r, q, "c")
    above_put = implied_volatility(k * np.exp(-r * t) + 1.0, s, k, t, r, q, "p")
    negative = implied_volatility(-1.0, s, k, t, r, q, "p")

    for value in (below, at_upper, above_put, negative):
        assert np.isnan(value)


def test_price_at_intrinsic_gives_zero_volatility() -> None:
    iv = implied_volatility([0.0, 0.0], 100.0, [150.0, 50.0], 0.5, 0.03, 0.0, ["c", "p"])

    np.testing.assert_array_equal(iv, [0.0, 0.0])


def test_expired_or_invalid_inputs_give_nan() -> None:
    iv = implied_volatility([5.0, 5.0, 5.0, np.nan, 5.0], [100.0, 0.0, 100.0, 100.0, np.inf],
                            100.0, [0.0, 1.0, np.nan, 1.0, 1.0], 0.05, 0.0, "c")

    assert np.isnan(iv).all()


def test_garbage_inputs_finish_quickly_without_hanging() -> None:
    rng = np.random.default_rng(23)
    n = 200_000
    args = [rng.uniform(-10, 1e4, n) * rng.choice([1e-300, 1e-8, 1.0, 1e8, np.inf], n)
            for _ in range(4)]
    started = time.perf_counter()

    iv = implied_volatility(args[0], np.abs(args[1]), np.abs(args[2]), np.abs(args[3]),
                            rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n),
                            rng.random(n) < 0.5)

    assert time.perf_counter() - started < 5.0
    assert not np.isinf(iv).any()
    assert (iv[np.isfinite(iv)] >= 0).all()


def test_arrays_variant_matches_and_scalars_give_0d() -> None:
    x = _random_options(100, seed=24)
    g = bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], 0.03, 0.0, x["sigma"])

    a = implied_volatility(g["price"], x["S"], x["K"], x["T"], 0.03, 0.0, x["is_call"])
    b = implied_volatility_arrays(x["is_call"], g["price"], x["S"], x["K"], x["T"], 0.03, 0.0)
    scalar = implied_volatility(10.0, 100.0, 100.0, 1.0, 0.0, 0.0, "c")

    np.testing.assert_array_equal(a, b)
    assert scalar.shape == ()
    assert float(scalar) == pytest.approx(0.2513226937101481, abs=1e-12)  # vollib's value
