"""Features over history equal TA-Lib and the live shards' IndicatorBank, bar for bar."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib

from market import patterns
from market.incremental import INDICATOR_NAMES, IndicatorBank
from market.research.data import SymbolBars, load_bars
from market.research.features import (
    CANDLE_NAMES,
    PATTERN_NAMES,
    candles,
    features,
    session_starts,
)
from market.research.lake import sessions_ending, simulate_bars, write_bars
from market.research.strategies import Bars
from pipelines.features import run


def _lake(root: Path) -> Path:
    frame = simulate_bars(["AAA", "BBB"], sessions_ending(date(2025, 3, 7), 3), seed=1, chunk=0)
    write_bars(root, frame)
    return root


def test_features_equal_talib(tmp_path: Path) -> None:
    (item,) = load_bars(_lake(tmp_path), ["AAA"])
    b = item.bars
    frame = features(item)
    expected = {
        "sma_20": talib.SMA(b.close, 20), "ema_20": talib.EMA(b.close, 20),
        "rsi_14": talib.RSI(b.close, 14), "macd": talib.MACD(b.close, 12, 26, 9)[0],
        "macd_signal": talib.MACD(b.close, 12, 26, 9)[1],
        "bb_upper": talib.BBANDS(b.close, 20, 2, 2)[0],
        "atr_14": talib.ATR(b.high, b.low, b.close, 14),
        "stoch_k": talib.STOCH(b.high, b.low, b.close, 5, 3, 0, 3, 0)[0],
        "stoch_d": talib.STOCH(b.high, b.low, b.close, 5, 3, 0, 3, 0)[1],
        "obv": talib.OBV(b.close, b.volume), "adx_14": talib.ADX(b.high, b.low, b.close, 14),
        "engulfing": talib.CDLENGULFING(b.open, b.high, b.low, b.close),
        "doji": talib.CDLDOJI(b.open, b.high, b.low, b.close),
        "hammer": talib.CDLHAMMER(b.open, b.high, b.low, b.close),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(frame[name].to_numpy().astype(np.float64), values,
                                   rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)
    assert frame.height == 3 * 390


def test_features_equal_the_live_indicator_bank_bar_for_bar(tmp_path: Path) -> None:
    (item,) = load_bars(_lake(tmp_path), ["BBB"])
    b = item.bars
    bank = IndicatorBank(1)
    starts = session_starts(item.timestamp_ns)
    live = np.empty((len(b), len(INDICATOR_NAMES)))
    for i in range(len(b)):  # as the shard commits: VWAP reset before a session's first bar
        if starts[i]:
            bank.reset_session([0])
        live[i] = bank.update([0], b.high[i:i + 1], b.low[i:i + 1], b.close[i:i + 1],
                              b.volume[i:i + 1])[0]
    frame = features(item)
    assert starts.sum() == 3
    for j, name in enumerate(INDICATOR_NAMES):
        np.testing.assert_allclose(frame[name].to_numpy(), live[:, j], rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=name)


def test_features_job_writes_partitions_like_the_lake(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    manifest = run(lake, tmp_path / "features", use_ray=False)
    written = sorted(p.relative_to(tmp_path / "features").as_posix()
                     for p in (tmp_path / "features").rglob("*.parquet"))
    assert written == ["symbol=AAA/year=2025/features.parquet",
                       "symbol=BBB/year=2025/features.parquet"]
    frame = pl.read_parquet(tmp_path / "features" / written[0])
    assert frame.columns[:2] == ["symbol", "timestamp"]
    assert set(PATTERN_NAMES) <= set(frame.columns)
    assert manifest["rows"] == 2 * 3 * 390


CDL = {"doji": "CDLDOJI", "engulfing": "CDLENGULFING", "hammer": "CDLHAMMER",
       "shooting_star": "CDLSHOOTINGSTAR", "morning_star": "CDLMORNINGSTAR",
       "evening_star": "CDLEVENINGSTAR", "hanging_man": "CDLHANGINGMAN",
       "inverted_hammer": "CDLINVERTEDHAMMER", "harami": "CDLHARAMI",
       "marubozu": "CDLMARUBOZU"}


def _ohlc(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Cent prices with many equal open/close (dojis, shared body edges) and bare shadows."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    open_ = np.round(np.concatenate([[100.0], close[:-1]]) * (1 + rng.normal(0, 0.003, n)), 2)
    open_ = np.where(rng.random(n) < 0.2, close, open_)
    high = np.maximum(open_, close) + np.round(
        np.abs(rng.normal(0, 0.3, n)) * (rng.random(n) < 0.7), 2)
    low = np.minimum(open_, close) - np.round(
        np.abs(rng.normal(0, 0.3, n)) * (rng.random(n) < 0.7), 2)
    return open_, high, low, close


def test_every_candle_column_equals_talib_and_every_pattern_the_live_functions() -> None:
    o, h, lo, c = _ohlc(20_000, seed=4)
    item = SymbolBars("X", (np.arange(c.size) * 60 * 10**9).astype(np.int64),
                      Bars(o, h, lo, c, np.ones_like(c)))
    frame = features(item)
    for name, function in CDL.items():
        expected = getattr(talib, function)(o, h, lo, c)
        assert np.count_nonzero(expected) > 50, name  # the case is exercised
        np.testing.assert_array_equal(frame[name].to_numpy(), expected, err_msg=name)
    np.testing.assert_array_equal(frame["breakout"].to_numpy(), patterns.breakout(h, lo, c, 20))
    np.testing.assert_array_equal(frame["ma_cross"].to_numpy(), patterns.ma_cross(c, 20, 50))


@pytest.mark.parametrize("n", [1, 3, 11, 12, 13, 20, 21, 500])
def test_candles_equal_market_patterns_on_short_and_gappy_bars(n: int) -> None:
    for seed in range(4):
        o, h, lo, c = _ohlc(n, seed)
        if seed % 2:
            rng = np.random.default_rng(seed)
            for x in (o, h, lo, c):
                x[rng.random(n) < 0.03] = np.nan  # NaNs, as numpy propagates them
        found = candles(o, h, lo, c)
        for row, name in enumerate(CANDLE_NAMES):
            np.testing.assert_array_equal(found[row], patterns._CANDLES[name][0](o, h, lo, c),
                                          err_msg=f"{name} n={n} seed={seed}")
        np.testing.assert_array_equal(found[len(CANDLE_NAMES)],
                                      patterns.breakout(h, lo, c, 20))


def test_session_starts_follow_new_york_days_across_daylight_saving_changes() -> None:
    start = np.datetime64("2025-03-01T00:00", "ns").astype(np.int64)
    stamps = (start + np.arange(0, 300 * 24 * 60, 7) * 60 * 10**9).astype(np.int64)
    days = (pl.Series(stamps).cast(pl.Datetime("ns", "UTC"))
            .dt.convert_time_zone("America/New_York").dt.date().to_physical().to_numpy())
    expected = np.concatenate([[True], days[1:] != days[:-1]])
    np.testing.assert_array_equal(session_starts(stamps), expected)
    assert expected.sum() == 301  # 300 UTC days starting at UTC midnight span 301 in New York
