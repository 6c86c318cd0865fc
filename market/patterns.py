"""Candlestick patterns (TA-Lib's CDL* rules) and breakout / moving-average-cross signals.

The ``cdl_*`` functions return int32 arrays in TA-Lib's encoding: ``100`` bullish,
``-100`` bearish, ``0`` none (``cdl_engulfing`` gives ``+-80`` when the bodies share
an edge, as TA-Lib does). They use TA-Lib's default candle settings: a "short"
or "long" body is compared with the average real body of the previous 10
candles, a "doji" body is at most 10% of the previous 10 candles' average
high-low range, "very short" shadows likewise 10%, and "near" is 20% of the
previous 5 candles' average range. Averages are kept as TA-Lib's running sums,
so borderline candles get the same answer.

:func:`detect_patterns` turns the last bars into a list of detections for /analyze.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from market.indicators import sma

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]

# TA-Lib default candle settings: (range kind, average period, factor)
_REAL_BODY, _HIGH_LOW, _SHADOWS = 0, 1, 2
_BODY_LONG = (_REAL_BODY, 10, 1.0)
_BODY_SHORT = (_REAL_BODY, 10, 1.0)
_BODY_DOJI = (_HIGH_LOW, 10, 0.1)
_SHADOW_LONG = (_REAL_BODY, 0, 1.0)
_SHADOW_VERY_SHORT = (_HIGH_LOW, 10, 0.1)
_NEAR = (_HIGH_LOW, 5, 0.2)
_PENETRATION = 0.3


@numba.njit(cache=True, error_model="numpy")
def _ranges(o: F64, h: F64, lo: F64, c: F64, kind: int) -> F64:
    """TA_CANDLERANGE for every bar."""
    n = o.shape[0]
    out = np.empty(n)
    for i in range(n):
        if kind == _REAL_BODY:
            out[i] = abs(c[i] - o[i])
        elif kind == _HIGH_LOW:
            out[i] = h[i] - lo[i]
        else:
            out[i] = (h[i] - max(c[i], o[i])) + (min(c[i], o[i]) - lo[i])
    return out


@numba.njit(cache=True, error_model="numpy")
def _averages(r: F64, kind: int, period: int, factor: float, first: int, shift: int) -> F64:
    """TA_CANDLEAVERAGE at bar ``i - shift`` for each ``i >= first``, as TA-Lib's running sum.

    The window is the ``period`` bars before ``i - shift``; with ``period == 0`` the
    bar's own range is used.
    """
    n = r.shape[0]
    out = np.full(n, np.nan)
    divisor = 2.0 if kind == _SHADOWS else 1.0
    if period == 0:
        for i in range(max(first, shift), n):
            out[i] = factor * r[i - shift] / divisor
        return out
    if first >= n:
        return out
    total = 0.0
    for j in range(first - shift - period, first - shift):
        total += r[j]
    for i in range(first, n):
        out[i] = factor * (total / period) / divisor
        total += r[i - shift] - r[i - shift - period]
    return out


def _prepare(*arrays: npt.ArrayLike) -> list[F64]:
    xs = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    if any(x.ndim != 1 or x.shape != xs[0].shape for x in xs):
        raise ValueError("open, high, low and close must be 1-D arrays of one length")
    return xs


def _avg(o: F64, h: F64, lo: F64, c: F64, setting: tuple[int, int, float], first: int,
         shift: int = 0) -> F64:
    kind, period, factor = setting
    result: F64 = _averages(_ranges(o, h, lo, c, kind), kind, period, factor, first, shift)
    return result


def cdl_doji(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
             close: npt.ArrayLike) -> I32:
    """Doji (TA-Lib ``CDLDOJI``): real body <= 10% of the average range; 100 or 0."""
    o, h, lo, c = _prepare(open_, high, low, close)
    first = _BODY_DOJI[1]
    out = np.zeros(o.shape[0], np.int32)
    if o.shape[0] <= first:
        return out
    body = np.abs(c - o)
    avg = _avg(o, h, lo, c, _BODY_DOJI, first)
    out[first:] = np.where(body[first:] <= avg[first:], 100, 0)
    return out


def cdl_engulfing(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                  close: npt.ArrayLike) -> I32:
    """Engulfing (TA-Lib ``CDLENGULFING``): +-100, or +-80 when the bodies share an edge."""
    o, _, _, c = _prepare(open_, high, low, close)
    out = np.zeros(o.shape[0], np.int32)
    if o.shape[0] < 3:
        return out
    color = np.where(c >= o, 1, -1)
    o1, c1, col1 = o[1:-1], c[1:-1], color[1:-1]
    o2, c2, col2 = o[2:], c[2:], color[2:]
    bull = (col2 == 1) & (col1 == -1) & (((c2 >= o1) & (o2 < c1)) | ((c2 > o1) & (o2 <= c1)))
    bear = (col2 == -1) & (col1 == 1) & (((o2 >= c1) & (c2 < o1)) | ((o2 > c1) & (c2 <= o1)))
    strength = np.where((o2 != c1) & (c2 != o1), 100, 80)
    out[2:] = np.where(bull | bear, col2 * strength, 0)
    return out


_FIRST_ONE_SHADOW = 11  # first bar TA-Lib scores for the one-long-shadow candles


def _previous(x: F64) -> F64:
    """``x`` shifted one bar later (NaN for the first bar)."""
    out = np.full(x.shape[0], np.nan)
    out[1:] = x[:-1]
    return out


def _one_long_shadow(o: F64, h: F64, lo: F64, c: F64, *, long_lower: bool,
                     position: npt.NDArray[np.bool_], value: int) -> I32:
    """TA-Lib's single-candle test shared by hammer, hanging man, shooting star and
    inverted hammer: short body, one long shadow, the other very short, plus ``position``
    (where the candle sits against the previous bar); ``value`` where it holds, else 0."""
    first = _FIRST_ONE_SHADOW
    out = np.zeros(o.shape[0], np.int32)
    if o.shape[0] <= first:
        return out
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    long_shadow, short_shadow = (bottom - lo, h - top) if long_lower else (h - top, bottom - lo)
    hit = ((np.abs(c - o) < _avg(o, h, lo, c, _BODY_SHORT, first))
           & (long_shadow > _avg(o, h, lo, c, _SHADOW_LONG, first))
           & (short_shadow < _avg(o, h, lo, c, _SHADOW_VERY_SHORT, first))
           & position)
    out[first:] = np.where(hit[first:], value, 0)
    return out


def cdl_hammer(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
               close: npt.ArrayLike) -> I32:
    """Hammer (TA-Lib ``CDLHAMMER``): small body, long lower shadow, near prior lows; 100."""
    o, h, lo, c = _prepare(open_, high, low, close)
    near_prior_low = _previous(lo) + _avg(o, h, lo, c, _NEAR, _FIRST_ONE_SHADOW, shift=1)
    return _one_long_shadow(o, h, lo, c, long_lower=True,
                            position=np.minimum(o, c) <= near_prior_low, value=100)


def cdl_shooting_star(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                      close: npt.ArrayLike) -> I32:
    """Shooting star (TA-Lib ``CDLSHOOTINGSTAR``): small body gapping up, long upper shadow."""
    o, h, lo, c = _prepare(open_, high, low, close)
    gap_up = np.minimum(o, c) > _previous(np.maximum(o, c))
    return _one_long_shadow(o, h, lo, c, long_lower=False, position=gap_up, value=-100)


def cdl_hanging_man(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                    close: npt.ArrayLike) -> I32:
    """Hanging man (TA-Lib ``CDLHANGINGMAN``): a hammer shape near the prior highs; -100."""
    o, h, lo, c = _prepare(open_, high, low, close)
    near_prior_high = _previous(h) - _avg(o, h, lo, c, _NEAR, _FIRST_ONE_SHADOW, shift=1)
    return _one_long_shadow(o, h, lo, c, long_lower=True,
                            position=np.minimum(o, c) >= near_prior_high, value=-100)


def cdl_inverted_hammer(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                        close: npt.ArrayLike) -> I32:
    """Inverted hammer (TA-Lib ``CDLINVERTEDHAMMER``): small body gapping down, long top shadow."""
    o, h, lo, c = _prepare(open_, high, low, close)
    gap_down = np.maximum(o, c) < _previous(np.minimum(o, c))
    return _one_long_shadow(o, h, lo, c, long_lower=False, position=gap_down, value=100)


def cdl_harami(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
               close: npt.ArrayLike) -> I32:
    """Harami (TA-Lib ``CDLHARAMI``): a short body inside the previous long one; +-100 (+-80)."""
    o, h, lo, c = _prepare(open_, high, low, close)
    n = o.shape[0]
    first = 11
    out = np.zeros(n, np.int32)
    if n <= first:
        return out
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    body = np.abs(c - o)
    color = np.where(c >= o, 1, -1)
    long_1 = _avg(o, h, lo, c, _BODY_LONG, first, shift=1)
    short_2 = _avg(o, h, lo, c, _BODY_SHORT, first)
    i = np.arange(first, n)
    shape = (body[i - 1] > long_1[i]) & (body[i] <= short_2[i])
    inside = (top[i] < top[i - 1]) & (bottom[i] > bottom[i - 1])
    touching = (top[i] <= top[i - 1]) & (bottom[i] >= bottom[i - 1])
    out[first:] = np.where(shape & inside, -color[i - 1] * 100,
                           np.where(shape & touching, -color[i - 1] * 80, 0))
    return out


def cdl_marubozu(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                 close: npt.ArrayLike) -> I32:
    """Marubozu (TA-Lib ``CDLMARUBOZU``): a long body with (almost) no shadows; +-100."""
    o, h, lo, c = _prepare(open_, high, low, close)
    n = o.shape[0]
    first = 10
    out = np.zeros(n, np.int32)
    if n <= first:
        return out
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    body, upper, lower = np.abs(c - o), h - top, bottom - lo
    very_short = _avg(o, h, lo, c, _SHADOW_VERY_SHORT, first)
    hit = (body > _avg(o, h, lo, c, _BODY_LONG, first)) & (upper < very_short) & \
        (lower < very_short)
    s = slice(first, None)
    out[s] = np.where(hit[s], np.where(c[s] >= o[s], 100, -100), 0)
    return out


def _star(o: F64, h: F64, lo: F64, c: F64, bullish: bool, penetration: float) -> I32:
    n = o.shape[0]
    first = 12
    out = np.zeros(n, np.int32)
    if n <= first:
        return out
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    body = np.abs(c - o)
    color = np.where(c >= o, 1, -1)
    long_1 = _avg(o, h, lo, c, _BODY_LONG, first, shift=2)
    short_2 = _avg(o, h, lo, c, _BODY_SHORT, first, shift=1)
    short_3 = _avg(o, h, lo, c, _BODY_SHORT, first)
    i = np.arange(first, n)
    sign = 1 if bullish else -1
    gap = (top[i - 1] < bottom[i - 2]) if bullish else (bottom[i - 1] > top[i - 2])
    beyond = (c[i] > c[i - 2] + body[i - 2] * penetration) if bullish else \
        (c[i] < c[i - 2] - body[i - 2] * penetration)
    hit = ((body[i - 2] > long_1[i]) & (color[i - 2] == -sign)
           & (body[i - 1] <= short_2[i]) & gap
           & (body[i] > short_3[i]) & (color[i] == sign) & beyond)
    out[first:] = np.where(hit, 100 * sign, 0)
    return out


def cdl_morning_star(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                     close: npt.ArrayLike, penetration: float = _PENETRATION) -> I32:
    """Morning star (TA-Lib ``CDLMORNINGSTAR``): long black, gapped short, strong white; 100."""
    o, h, lo, c = _prepare(open_, high, low, close)
    return _star(o, h, lo, c, bullish=True, penetration=penetration)


def cdl_evening_star(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                     close: npt.ArrayLike, penetration: float = _PENETRATION) -> I32:
    """Evening star (TA-Lib ``CDLEVENINGSTAR``): long white, gapped short, strong black; -100."""
    o, h, lo, c = _prepare(open_, high, low, close)
    return _star(o, h, lo, c, bullish=False, penetration=penetration)


def breakout(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
             window: int = 20) -> I32:
    """100 where the close breaks above the previous ``window`` bars' high, -100 below their low."""
    h, lo, c = (np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close))
    n = c.shape[0]
    out = np.zeros(n, np.int32)
    if n <= window:
        return out
    windows_h = np.lib.stride_tricks.sliding_window_view(h, window)[:-1].max(axis=1)
    windows_l = np.lib.stride_tricks.sliding_window_view(lo, window)[:-1].min(axis=1)
    out[window:] = np.where(c[window:] > windows_h, 100, np.where(c[window:] < windows_l, -100, 0))
    return out


def ma_cross(close: npt.ArrayLike, fast: int = 20, slow: int = 50) -> I32:
    """100 where SMA(fast) crosses above SMA(slow) (golden cross), -100 below (death cross)."""
    f, s = sma(close, fast), sma(close, slow)
    out = np.zeros(f.shape[0], np.int32)
    above = f > s
    below = f < s
    valid = ~(np.isnan(f) | np.isnan(s))
    out[1:] = np.where(valid[1:] & valid[:-1] & above[1:] & ~above[:-1], 100,
                       np.where(valid[1:] & valid[:-1] & below[1:] & ~below[:-1], -100, 0))
    return out


_CANDLES: dict[str, tuple[Callable[..., I32], str]] = {
    "doji": (cdl_doji, "Doji: open and close nearly equal, indecision"),
    "engulfing": (cdl_engulfing, "Engulfing: the body engulfs the previous opposite body"),
    "hammer": (cdl_hammer, "Hammer: small body near the lows with a long lower shadow"),
    "shooting_star": (cdl_shooting_star,
                      "Shooting star: small body gapping up with a long upper shadow"),
    "morning_star": (cdl_morning_star, "Morning star: three-candle bullish reversal"),
    "evening_star": (cdl_evening_star, "Evening star: three-candle bearish reversal"),
    "hanging_man": (cdl_hanging_man, "Hanging man: hammer shape after a rise, bearish"),
    "inverted_hammer": (cdl_inverted_hammer,
                        "Inverted hammer: small body gapping down with a long upper shadow"),
    "harami": (cdl_harami, "Harami: a small body inside the previous long body"),
    "marubozu": (cdl_marubozu, "Marubozu: a long body with almost no shadows"),
}


def detect_patterns(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                    close: npt.ArrayLike, volume: npt.ArrayLike | None = None,
                    recent: int = 10, breakout_window: int = 20, fast: int = 20,
                    slow: int = 50) -> list[dict[str, Any]]:
    """Patterns and signals found in the last ``recent`` bars, newest first.

    Each detection: ``name``, ``index`` (bar index in the inputs), ``bars_ago``,
    ``direction`` (``bullish``/``bearish``/``neutral``), ``strength`` (TA-Lib's
    value) and ``description``. ``volume`` is accepted for symmetry (unused).
    """
    o, h, lo, c = _prepare(open_, high, low, close)
    n = c.shape[0]
    start = max(0, n - recent)
    found: list[dict[str, Any]] = []

    def add(name: str, values: I32, description: str) -> None:
        for i in np.flatnonzero(values[start:]) + start:
            v = int(values[i])
            direction = "neutral" if name == "doji" else ("bullish" if v > 0 else "bearish")
            found.append({"name": name, "index": int(i), "bars_ago": int(n - 1 - i),
                          "direction": direction, "strength": v, "description": description})

    for name, (func, description) in _CANDLES.items():
        add(name, func(o, h, lo, c), description)
    add("breakout", breakout(h, lo, c, breakout_window),
        f"Close beyond the previous {breakout_window} bars' high/low")
    add("ma_cross", ma_cross(c, fast, slow), f"SMA({fast}) crossed SMA({slow})")
    found.sort(key=lambda d: (-d["index"], d["name"]))
    return found
