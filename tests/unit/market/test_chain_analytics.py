"""market.chain_analytics: ratios, term structure, skew, max pain, exposures, unusual flow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from market import chain_analytics as ca
from market.greeks import bsm_greeks


def _chain(spot: float = 100.0) -> dict[str, np.ndarray]:
    strikes = np.arange(70.0, 131.0, 5.0)
    expiries = np.array(["2026-12-18", "2027-03-19"], dtype="datetime64[D]")
    k = np.tile(np.repeat(strikes, 2), 2)
    exp = np.repeat(expiries, 2 * strikes.size)
    is_call = np.tile([True, False], strikes.size * 2)
    t = np.where(exp == expiries[0], 0.07, 0.32)
    iv = 0.25 - 0.2 * np.log(k / spot) + np.where(exp == expiries[0], 0.0, 0.03)
    g = bsm_greeks(is_call, spot, k, t, 0.04, 0.0, iv)
    rng = np.random.default_rng(41)
    return {"is_call": is_call, "strike": k, "expiration": exp,
            "volume": rng.integers(0, 300, k.size).astype(float),
            "open_interest": rng.integers(50, 2000, k.size).astype(float),
            "implied_volatility": iv, "delta": g["delta"], "gamma": g["gamma"],
            "time_to_expiry": t, "price": g["price"]}


def test_put_call_ratios_are_put_over_call() -> None:
    r = ca.put_call_ratios([True, False, False], [100, 50, 150], [10, 20, 0])

    assert r["volume_ratio"] == pytest.approx(2.0)
    assert r["open_interest_ratio"] == pytest.approx(2.0)
    assert ca.put_call_ratios([False], [5], [5])["volume_ratio"] is None


def test_atm_iv_interpolates_at_the_underlying_price() -> None:
    iv = ca.atm_implied_volatility([90, 90, 110, 110], [0.30, 0.32, 0.20, 0.22], 105.0)

    assert iv == pytest.approx(0.31 + 0.75 * (0.21 - 0.31))


def test_skew_is_positive_for_a_put_skewed_surface() -> None:
    c = _chain()
    first = c["expiration"] == c["expiration"][0]

    skew = ca.delta_skew(c["is_call"][first], c["delta"][first],
                         c["implied_volatility"][first])

    assert skew["skew"] is not None
    assert skew["skew"] > 0
    assert skew["skew"] == pytest.approx(skew["put_iv"] - skew["call_iv"])


def test_skew_without_a_25_delta_put_is_none() -> None:
    skew = ca.delta_skew([True, True, False], [0.6, 0.2, -0.9], [0.2, 0.2, 0.2])

    assert skew["skew"] is None


def test_max_pain_matches_brute_force() -> None:
    rng = np.random.default_rng(42)
    k = rng.choice(np.arange(50.0, 151.0, 5.0), 60)
    calls = rng.random(60) < 0.5
    oi = rng.integers(0, 1000, 60).astype(float)

    result = ca.max_pain(k, calls, oi)

    def payout(s: float) -> float:
        return float(sum(o * (max(s - x, 0) if c else max(x - s, 0))
                         for x, c, o in zip(k, calls, oi, strict=True)))
    best = min(np.unique(k), key=payout)
    assert result["strike"] == best
    assert result["payout"] == pytest.approx(payout(best) * 100)


def test_gamma_exposure_sign_and_units() -> None:
    gamma = np.array([0.05, 0.04])

    e = ca.exposure_by_strike([100.0, 100.0], [True, False], gamma, [0.5, -0.5],
                              [1000.0, 500.0], 200.0)

    call = 0.05 * 1000 * 100 * 200.0**2 * 0.01
    put = 0.04 * 500 * 100 * 200.0**2 * 0.01
    assert e["total_gamma_exposure"] == pytest.approx(call - put)
    assert e["gamma_exposure"] == pytest.approx([call - put])
    assert e["total_delta_exposure"] == pytest.approx((0.5 * 1000 - 0.5 * 500) * 100 * 200.0)


def test_unusual_activity_flags_volume_over_oi_and_over_history() -> None:
    volume = np.array([500.0, 500.0, 50.0, 400.0])
    oi = np.array([100.0, 1000.0, 10.0, 1000.0])
    history = np.array([[10.0] * 10, [480.0, 520.0] * 5, [1.0] * 10, [20.0, 30.0] * 5])

    flags = ca.unusual_activity(volume, oi, history)

    np.testing.assert_array_equal(flags, [True, False, False, True])


def test_chain_summary_is_json_without_nan_and_accepts_extra_columns() -> None:
    c = _chain()
    c["implied_volatility"][3] = np.nan
    previous = c["open_interest"] - np.arange(c["strike"].size)

    summary = ca.chain_summary(**c, underlying_price=100.0, previous_open_interest=previous,
                               as_of_ns=int(np.datetime64("2026-11-24", "ns").astype(np.int64)))

    text = json.dumps(summary, allow_nan=False)
    assert "NaN" not in text
    terms = summary["term_structure"]
    assert [t["expiration"] for t in terms] == ["2026-12-18", "2027-03-19"]
    assert terms[0]["days_to_expiry"] == 24
    assert terms[0]["atm_iv"] == pytest.approx(0.25, abs=1e-9)
    assert terms[1]["atm_iv"] == pytest.approx(0.28, abs=1e-9)
    assert summary["open_interest_change"]["total"] == pytest.approx(
        float(np.arange(c["strike"].size).sum()))
    assert summary["put_call"]["volume_ratio"] == pytest.approx(
        c["volume"][~c["is_call"]].sum() / c["volume"][c["is_call"]].sum())


def test_empty_chain_summary_is_valid() -> None:
    empty = np.array([])

    summary = ca.chain_summary(np.array([], bool), empty, np.array([], "datetime64[D]"), empty,
                               empty, empty, empty, empty, underlying_price=50.0)

    assert summary["contracts"] == 0
    assert summary["term_structure"] == []
    json.dumps(summary, allow_nan=False)


@pytest.mark.parametrize(("spot", "iv", "days"), [(189.37, 0.2431, 3), (582.16, 0.1367, 10),
                                                  (131.88, 0.5212, 17)])
def test_expected_move_is_the_atm_straddle_over_sqrt_two_over_pi(spot: float, iv: float,
                                                                  days: int) -> None:
    # vollib's Black-Scholes straddle at the money (r = 0): S * sigma * sqrt(T) * sqrt(2/pi)
    # to first order, so the one-sigma move is the straddle / sqrt(2/pi).
    from vollib.black_scholes import black_scholes

    t = days / 365.0
    straddle = (black_scholes("c", spot, spot, t, 0.0, iv)
                + black_scholes("p", spot, spot, t, 0.0, iv))
    move = ca.expected_move(spot, iv, days)
    assert move == pytest.approx(straddle / (2.0 / np.pi) ** 0.5, rel=5e-3)
    assert move == pytest.approx(spot * iv * (days / 365.0) ** 0.5, rel=1e-12)


def test_expected_move_of_a_past_expiry_is_nan() -> None:
    assert np.isnan(ca.expected_move(100.0, 0.2, -1))
