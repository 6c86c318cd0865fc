"""The live shards' indicator bundle and candlestick patterns, computed over history.

One row per bar: ``symbol``, ``timestamp``, the :data:`market.incremental.INDICATOR_NAMES`
columns (what :class:`market.incremental.IndicatorBank` holds after that bar; TA-Lib's
functions with TA-Lib's defaults; VWAP restarts at each New York trading day's first bar,
as the shards reset it), then one int32 column per pattern of
:mod:`market.patterns` (TA-Lib's candle values: 100 bullish, -100 bearish, 0 none;
``breakout`` over 20 bars and ``ma_cross`` of SMA 20/50 in the same convention).

The candles and ``breakout`` come from one numba pass over the bars (:func:`candles`)
that gives exactly :mod:`market.patterns`' values: it reuses that module's running
averages, one per distinct (setting, first bar, shift), so every comparison sees the
same floating-point numbers; one pass instead of a dozen numpy passes with gathers
(``bench/bench_features.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt
import polars as pl

from market import indicators, patterns
from market.incremental import INDICATOR_NAMES
from market.research.data import SymbolBars

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]

CANDLE_NAMES: tuple[str, ...] = tuple(patterns._CANDLES)
PATTERN_NAMES: tuple[str, ...] = (*CANDLE_NAMES, "breakout", "ma_cross")
FEATURE_COLUMNS: tuple[str, ...] = (*INDICATOR_NAMES, *PATTERN_NAMES)
BREAKOUT_WINDOW = 20
NS_PER_HOUR = 3_600 * 10**9
WHOLE_HOUR_OFFSETS_FROM_NS = -2_208_988_800 * 10**9  # 1900-01-01 UTC
_STAR_PENETRATION = 0.3  # market.patterns' default, which the shards use


def _new_york_days(timestamp_ns: np.ndarray) -> np.ndarray:
    return (pl.Series(timestamp_ns).cast(pl.Datetime("ns", "UTC"))
            .dt.convert_time_zone("America/New_York").dt.date().to_physical().to_numpy())


def session_starts(timestamp_ns: np.ndarray) -> np.ndarray:
    """Return True at each bar that opens a New York calendar day (the VWAP resets)."""
    stamps = np.asarray(timestamp_ns, dtype=np.int64)
    hours = stamps // NS_PER_HOUR
    if stamps.shape[0] > 1 and stamps[0] >= WHOLE_HOUR_OFFSETS_FROM_NS \
            and np.all(hours[1:] >= hours[:-1]):
        # Since 1900 New York's offsets are whole hours and change on the hour, so a bar
        # falls on its hour's New York day: convert one stamp per hour, not every bar.
        first = np.flatnonzero(np.concatenate(([True], hours[1:] != hours[:-1])))
        days = np.repeat(_new_york_days(hours[first] * NS_PER_HOUR),
                         np.diff(np.append(first, stamps.shape[0])))
    else:
        days = _new_york_days(stamps)
    starts = np.ones(len(days), dtype=np.bool_)
    starts[1:] = days[1:] != days[:-1]
    return starts


@numba.njit(cache=True, inline="always")
def _top(o: float, c: float) -> float:
    # np.maximum's value, NaN included
    if math.isnan(o) or math.isnan(c):
        return math.nan
    return o if o > c else c


@numba.njit(cache=True, inline="always")
def _bottom(o: float, c: float) -> float:
    if math.isnan(o) or math.isnan(c):
        return math.nan
    return o if o < c else c


@numba.njit(cache=True, inline="always")
def _color(o: float, c: float) -> int:
    return 1 if c >= o else -1


@numba.njit(cache=True, error_model="numpy")
def _candle_kernel(o: F64, h: F64, lo: F64, c: F64, body10_f10: F64, body10_f11: F64,
                   body10_f11_s1: F64, body10_f12: F64, body10_f12_s1: F64,
                   body10_f12_s2: F64, range10_f10: F64, range10_f11: F64,
                   near5_f11_s1: F64, out: I32) -> None:
    """Fill the first ``len(CANDLE_NAMES)`` rows of ``out`` (one per name, in order).

    Each pattern's rule is ``market.patterns``' numpy expression for bar ``i``; the
    averages are its ``_averages`` arrays, named by (setting, first bar, shift).
    """
    n = o.shape[0]
    for i in range(n):
        oi, hi, li, ci = o[i], h[i], lo[i], c[i]
        body = abs(ci - oi)
        top, bottom = _top(oi, ci), _bottom(oi, ci)
        color = _color(oi, ci)
        # doji (first bar 10)
        if n > 10 and i >= 10 and body <= range10_f10[i]:
            out[0, i] = 100
        # engulfing (from bar 2)
        if n >= 3 and i >= 2:
            o1, c1 = o[i - 1], c[i - 1]
            color1 = _color(o1, c1)
            bull = (color == 1 and color1 == -1
                    and ((ci >= o1 and oi < c1) or (ci > o1 and oi <= c1)))
            bear = (color == -1 and color1 == 1
                    and ((oi >= c1 and ci < o1) or (oi > c1 and ci <= o1)))
            if bull or bear:
                out[1, i] = color * (100 if (oi != c1 and ci != o1) else 80)
        if n > 11 and i >= 11:
            # the one-long-shadow family: hammer, shooting star, hanging man, inverted hammer
            short_body = body < body10_f11[i]
            lower, upper = bottom - li, hi - top
            long_lower = short_body and lower > body and upper < range10_f11[i]
            long_upper = short_body and upper > body and lower < range10_f11[i]
            previous_top = _top(o[i - 1], c[i - 1])
            previous_bottom = _bottom(o[i - 1], c[i - 1])
            if long_lower and bottom <= lo[i - 1] + near5_f11_s1[i]:
                out[2, i] = 100  # hammer
            if long_upper and bottom > previous_top:
                out[3, i] = -100  # shooting star
            if long_lower and bottom >= h[i - 1] - near5_f11_s1[i]:
                out[6, i] = -100  # hanging man
            if long_upper and top < previous_bottom:
                out[7, i] = 100  # inverted hammer
            # harami
            body1 = abs(c[i - 1] - o[i - 1])
            if body1 > body10_f11_s1[i] and body <= body10_f11[i]:
                color1 = _color(o[i - 1], c[i - 1])
                if top < previous_top and bottom > previous_bottom:
                    out[8, i] = -color1 * 100
                elif top <= previous_top and bottom >= previous_bottom:
                    out[8, i] = -color1 * 80
        # marubozu (first bar 10)
        if (n > 10 and i >= 10 and body > body10_f10[i] and hi - top < range10_f10[i]
                and bottom - li < range10_f10[i]):
            out[9, i] = 100 if ci >= oi else -100
        # morning and evening star (first bar 12)
        if n > 12 and i >= 12:
            o1, c1, o2, c2 = o[i - 1], c[i - 1], o[i - 2], c[i - 2]
            body2 = abs(c2 - o2)
            shape = (body2 > body10_f12_s2[i] and abs(c1 - o1) <= body10_f12_s1[i]
                     and body > body10_f12[i])
            if (shape and _color(o2, c2) == -1 and color == 1
                    and _top(o1, c1) < _bottom(o2, c2)
                    and ci > c2 + body2 * _STAR_PENETRATION):
                out[4, i] = 100
            if (shape and _color(o2, c2) == 1 and color == -1
                    and _bottom(o1, c1) > _top(o2, c2)
                    and ci < c2 - body2 * _STAR_PENETRATION):
                out[5, i] = -100


@numba.njit(cache=True, error_model="numpy")
def _breakout_kernel(h: F64, lo: F64, c: F64, window: int, out: I32) -> None:
    """``market.patterns.breakout``: the close against the previous ``window`` bars' high
    and low, from sliding maxima and minima kept in monotonic queues (O(1) a bar)."""
    n = c.shape[0]
    if n <= window:
        return
    highs = np.empty(n, dtype=np.int64)
    lows = np.empty(n, dtype=np.int64)
    high_head = high_tail = low_head = low_tail = 0
    high_nan = low_nan = -window - 1  # the latest NaN's bar: a window holding one has NaN
    for i in range(n):
        if i >= window:  # bars i - window .. i - 1 are in the queues
            while high_head < high_tail and highs[high_head] < i - window:
                high_head += 1
            while low_head < low_tail and lows[low_head] < i - window:
                low_head += 1
            if high_nan < i - window and c[i] > h[highs[high_head]]:
                out[i] = 100
            elif low_nan < i - window and c[i] < lo[lows[low_head]]:
                out[i] = -100
        if math.isnan(h[i]):
            high_nan = i
        else:
            while high_tail > high_head and h[highs[high_tail - 1]] <= h[i]:
                high_tail -= 1
            highs[high_tail] = i
            high_tail += 1
        if math.isnan(lo[i]):
            low_nan = i
        else:
            while low_tail > low_head and lo[lows[low_tail - 1]] >= lo[i]:
                low_tail -= 1
            lows[low_tail] = i
            low_tail += 1


def candles(o: F64, h: F64, lo: F64, c: F64) -> I32:
    """Return a (11, n) int32 array: the rows of ``CANDLE_NAMES``, then ``breakout`` (20).

    Equal to :mod:`market.patterns`' functions on the same float64 arrays.
    """
    n = o.shape[0]
    out = np.zeros((len(CANDLE_NAMES) + 1, n), dtype=np.int32)
    body = patterns._ranges(o, h, lo, c, patterns._REAL_BODY)
    span = patterns._ranges(o, h, lo, c, patterns._HIGH_LOW)

    def average(setting: tuple[int, int, float], first: int, shift: int = 0) -> F64:
        kind, period, factor = setting
        ranges = body if kind == patterns._REAL_BODY else span
        result: F64 = patterns._averages(ranges, kind, period, factor, first, shift)
        return result

    _candle_kernel(o, h, lo, c,
                   average(patterns._BODY_LONG, 10), average(patterns._BODY_SHORT, 11),
                   average(patterns._BODY_LONG, 11, 1), average(patterns._BODY_SHORT, 12),
                   average(patterns._BODY_SHORT, 12, 1), average(patterns._BODY_LONG, 12, 2),
                   average(patterns._BODY_DOJI, 10), average(patterns._SHADOW_VERY_SHORT, 11),
                   average(patterns._NEAR, 11, 1), out)
    _breakout_kernel(h, lo, c, BREAKOUT_WINDOW, out[len(CANDLE_NAMES)])
    return out


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
    found = candles(*(np.ascontiguousarray(x, dtype=np.float64) for x in (o, h, lo, c)))
    for row, name in enumerate((*CANDLE_NAMES, "breakout")):
        columns[name] = found[row]
    columns["ma_cross"] = patterns.ma_cross(c, 20, 50)
    return pl.DataFrame(columns)
