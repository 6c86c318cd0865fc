"""market.patterns against TA-Lib's CDL* functions, plus breakout / MA-cross signals."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from market import patterns as P  # noqa: N812 - short alias for many calls


def _candles(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random candles with many small bodies and short shadows so that patterns occur."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.004, n))
    small = rng.random(n) < 0.2
    open_[small] = close[small] * (1 + rng.normal(0, 0.0003, small.sum()))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n))
                                             * (rng.random(n) < 0.7))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n))
                                            * (rng.random(n) < 0.7))
    return open_, high, low, close


PAIRS = [
    (P.cdl_doji, talib.CDLDOJI), (P.cdl_engulfing, talib.CDLENGULFING),
    (P.cdl_hammer, talib.CDLHAMMER), (P.cdl_shooting_star, talib.CDLSHOOTINGSTAR),
    (P.cdl_morning_star, talib.CDLMORNINGSTAR), (P.cdl_evening_star, talib.CDLEVENINGSTAR),
    (P.cdl_hanging_man, talib.CDLHANGINGMAN), (P.cdl_inverted_hammer, talib.CDLINVERTEDHAMMER),
    (P.cdl_harami, talib.CDLHARAMI), (P.cdl_marubozu, talib.CDLMARUBOZU),
]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_random_candles_match_talib_exactly(ours, theirs, seed: int) -> None:  # type: ignore[no-untyped-def]
    o, h, lo, c = _candles(50_000, seed)

    expected = theirs(o, h, lo, c)
    got = ours(o, h, lo, c)

    assert (expected != 0).sum() > 50  # the data really exercise the pattern
    np.testing.assert_array_equal(got, expected)


def test_engulfing_with_shared_edge_matches_talib() -> None:
    o = np.array([10.0, 10.0, 10.0, 9.0, 12.0])
    c = np.array([10.0, 10.0, 9.0, 10.5, 8.0])
    h = np.maximum(o, c) + 0.1
    lo = np.minimum(o, c) - 0.1

    np.testing.assert_array_equal(P.cdl_engulfing(o, h, lo, c), talib.CDLENGULFING(o, h, lo, c))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_short_input_gives_zeros_like_talib(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    o, h, lo, c = _candles(8, 3)

    np.testing.assert_array_equal(ours(o, h, lo, c), theirs(o, h, lo, c))


def test_breakout_flags_close_beyond_previous_window() -> None:
    close = np.array([10.0, 10.5, 10.2, 10.4, 11.0, 10.1, 9.0])
    high = close + 0.2
    low = close - 0.2

    signal = P.breakout(high, low, close, window=3)

    np.testing.assert_array_equal(signal, [0, 0, 0, 0, 100, 0, -100])


def test_ma_cross_flags_golden_and_death_crosses() -> None:
    close = np.r_[np.full(10, 10.0), np.linspace(10, 20, 10), np.linspace(20, 5, 15)]

    signal = P.ma_cross(close, fast=3, slow=6)

    fast, slow = talib.SMA(close, 3), talib.SMA(close, 6)
    diff = np.sign(fast - slow)
    ups = [i for i in range(7, len(close)) if diff[i] > 0 and diff[i - 1] <= 0]
    downs = [i for i in range(7, len(close)) if diff[i] < 0 and diff[i - 1] >= 0]
    assert ups
    assert downs
    assert list(np.flatnonzero(signal == 100)) == ups
    assert list(np.flatnonzero(signal == -100)) == downs


def test_detect_patterns_lists_recent_detections_newest_first() -> None:
    o, h, lo, c = _candles(300, 4)

    found = P.detect_patterns(o, h, lo, c, np.ones(300), recent=30)

    assert found
    assert all(d["index"] >= 270 for d in found)
    assert [d["index"] for d in found] == sorted((d["index"] for d in found), reverse=True)
    doji = talib.CDLDOJI(o, h, lo, c)
    assert {d["index"] for d in found if d["name"] == "doji"} == set(
        np.flatnonzero(doji[270:]) + 270)
    for d in found:
        assert set(d) == {"name", "index", "bars_ago", "direction", "strength", "description"}
        assert d["direction"] in {"bullish", "bearish", "neutral"}
