"""Features over history equal TA-Lib and the live shards' IndicatorBank, bar for bar."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import talib

from market.incremental import INDICATOR_NAMES, IndicatorBank
from market.research.data import load_bars
from market.research.features import PATTERN_NAMES, features, session_starts
from market.research.lake import sessions_ending, simulate_bars, write_bars
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
