"""market.analysis: returns, realised volatility, relative volume, gaps, levels, summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from market import analysis as an


def _minute_bars(days: int, seed: int) -> dict[str, np.ndarray]:
    """Regular-session 1-minute bars (09:30-16:00 New York, EST: 14:30-21:00 UTC)."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2026-01-05T14:30", "ns").astype(np.int64)  # a Monday, EST
    ts = np.concatenate([base + d * 86400 * 10**9 + np.arange(390) * 60 * 10**9
                         for d in range(days)])
    n = ts.size
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    volume = np.tile(np.linspace(2000, 500, 390), days) * rng.uniform(0.8, 1.2, n)
    return {"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}


def test_simple_returns_use_the_last_w_bars() -> None:
    r = an.simple_returns([100.0, 110.0, 121.0], windows=(1, 2, 5))

    assert r[1] == pytest.approx(0.1)
    assert r[2] == pytest.approx(0.21)
    assert math.isnan(r[5])


def test_realized_volatility_recovers_simulated_volatility() -> None:
    rng = np.random.default_rng(51)
    sigma = 0.3
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma / math.sqrt(252), 20_000)))

    vol = an.realized_volatility(close, 19_999, bars_per_year=252)
    rolling = an.rolling_realized_volatility(close, 50, bars_per_year=252)

    assert vol == pytest.approx(sigma, rel=0.02)
    r = np.diff(np.log(close))
    assert rolling[50] == pytest.approx(np.std(r[:50], ddof=1) * math.sqrt(252))
    assert np.isnan(rolling[:50]).all()


def test_relative_volume_compares_the_same_minute_of_previous_days() -> None:
    bars = _minute_bars(4, seed=52)
    bars["volume"][-390:] *= 3.0  # the last day trades three times as much

    rvol, crvol = an.relative_volume(bars["ts"], bars["volume"])

    assert np.isnan(rvol[:390]).all()
    i = 3 * 390 + 100
    expected = bars["volume"][i] / np.mean(bars["volume"][[100, 490, 880]])
    assert rvol[i] == pytest.approx(expected)
    cum_today = bars["volume"][3 * 390: i + 1].sum()
    cum_past = np.mean([bars["volume"][d * 390: d * 390 + 101].sum() for d in range(3)])
    assert crvol[i] == pytest.approx(cum_today / cum_past)
    assert an.unusual_volume(crvol[-1:], 2.0)[0]
    assert not an.unusual_volume(crvol[2 * 390 + 5: 2 * 390 + 6], 2.0)[0]


def test_daily_bars_and_gaps_follow_new_york_days() -> None:
    bars = _minute_bars(3, seed=53)

    days = an.daily_bars(bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"],
                         bars["volume"])
    gap = an.gaps(days["open"][1:], days["close"][:-1])

    assert [str(d) for d in days["date"]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert days["high"][1] == bars["high"][390:780].max()
    assert days["volume"][2] == pytest.approx(bars["volume"][780:].sum())
    assert gap[0] == pytest.approx(bars["open"][390] / bars["close"][389] - 1)


def test_new_highs_and_lows_break_the_previous_window() -> None:
    high = np.array([10.0, 11.0, 10.5, 11.5, 9.0])
    low = high - 1.0

    new_high, new_low = an.new_highs_lows(high, low, window=2)

    np.testing.assert_array_equal(new_high, [False, False, False, True, False])
    np.testing.assert_array_equal(new_low, [False, False, False, False, True])


def test_support_and_resistance_come_from_repeated_swing_levels() -> None:
    # price oscillates between ~95 and ~105 and ends at 100
    t = np.arange(400)
    close = 100 + 5 * np.sin(t * 2 * np.pi / 40)
    close[-1] = 100.0
    high, low = close + 0.1, close - 0.1

    levels = an.support_resistance(high, low, close, np.ones(400), pivot=5)

    assert levels["support"][0]["price"] == pytest.approx(94.9, abs=0.1)
    assert levels["resistance"][0]["price"] == pytest.approx(105.1, abs=0.1)
    assert levels["resistance"][0]["touches"] >= 9
    assert levels["point_of_control"] is not None


def test_price_volume_summary_is_json_without_nan() -> None:
    bars = _minute_bars(3, seed=54)

    summary = an.price_volume_summary(bars["open"], bars["high"], bars["low"], bars["close"],
                                      bars["volume"], bars["ts"])

    text = json.dumps(summary, allow_nan=False)
    assert "NaN" not in text
    assert summary["bars"] == 3 * 390
    assert summary["realized_volatility"]["60_bars"] > 0
    assert summary["relative_volume"] == pytest.approx(1.0, rel=0.5)
    assert summary["gap"] is not None


def test_short_history_summary_has_nones_not_nans() -> None:
    summary = an.price_volume_summary([1.0], [1.0], [1.0], [1.0], [10.0])

    json.dumps(summary, allow_nan=False)
    assert summary["returns"]["1_bars"] is None
