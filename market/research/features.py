"""The live shards' indicator bundle and candlestick patterns, computed over history.

One row per bar: ``symbol``, ``timestamp``, the :data:`market.incremental.INDICATOR_NAMES`
columns (what :class:`market.incremental.IndicatorBank` holds after that bar; TA-Lib's
functions with TA-Lib's defaults; VWAP restarts at each New York trading day's first bar,
as the shards reset it), then one int32 column per pattern of
:mod:`market.patterns` (TA-Lib's candle values: 100 bullish, -100 bearish, 0 none;
``breakout`` over 20 bars and ``ma_cross`` of SMA 20/50 in the same convention).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from market import indicators, patterns
from market.incremental import INDICATOR_NAMES
from market.research.data import SymbolBars

PATTERN_NAMES: tuple[str, ...] = (*patterns._CANDLES, "breakout", "ma_cross")
FEATURE_COLUMNS: tuple[str, ...] = (*INDICATOR_NAMES, *PATTERN_NAMES)


def session_starts(timestamp_ns: np.ndarray) -> np.ndarray:
    """Return True at each bar that opens a New York calendar day (the VWAP resets)."""
    days = (pl.Series(timestamp_ns).cast(pl.Datetime("ns", "UTC"))
            .dt.convert_time_zone("America/New_York").dt.date().to_physical().to_numpy())
    starts = np.ones(len(days), dtype=np.bool_)
    starts[1:] = days[1:] != days[:-1]
    return starts


def features(item: SymbolBars) -> pl.DataFrame:
    """Return the bundle and pattern columns for one symbol's bars (see the module doc)."""
    b = item.bars
    o, h, lo, c, v = b.open, b.high, b.low, b.close, b.volume
    macd, signal, hist = indicators.macd(c, 12, 26, 9)
    upper, middle, lower = indicators.bbands(c, 20, 2.0, 2.0)
    slow_k, slow_d = indicators.stoch(h, lo, c, 5, 3, 3)
    columns: dict[str, object] = {
        "symbol": pl.Series([item.symbol], dtype=pl.String).gather(
            np.zeros(len(c), dtype=np.int64)),
        "timestamp": pl.Series(item.timestamp_ns).cast(pl.Datetime("ns", "UTC")),
        "sma_20": indicators.sma(c, 20), "ema_20": indicators.ema(c, 20),
        "rsi_14": indicators.rsi(c, 14), "macd": macd, "macd_signal": signal,
        "macd_hist": hist, "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
        "atr_14": indicators.atr(h, lo, c, 14),
        "vwap": indicators.vwap(h, lo, c, v, session_starts(item.timestamp_ns)),
        "stoch_k": slow_k, "stoch_d": slow_d, "obv": indicators.obv(c, v),
        "adx_14": indicators.adx(h, lo, c, 14),
    }
    for name, (function, _) in patterns._CANDLES.items():
        columns[name] = function(o, h, lo, c)
    columns["breakout"] = patterns.breakout(h, lo, c, 20)
    columns["ma_cross"] = patterns.ma_cross(c, 20, 50)
    return pl.DataFrame(columns)
