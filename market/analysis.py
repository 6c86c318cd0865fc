"""Price and volume analysis over bar arrays (oldest first).

Conventions:

* Returns are simple returns ``close[-1] / close[-1 - w] - 1`` over ``w`` bars.
* Realised volatility is the sample standard deviation (ddof=1) of log returns
  over the window, annualised by ``sqrt(bars_per_year)``; the default
  ``bars_per_year = 252 * 390`` is for 1-minute bars of a regular US session
  (use 252 for daily bars).
* Relative volume compares a bar with the mean volume of the bars at the same
  minute of the New York trading day on the previous ``lookback_days`` days;
  cumulative relative volume compares today's volume so far with the mean of
  the previous days' volume up to the same minute.
* Support/resistance come from swing pivots (a high/low that is the extreme of
  ``pivot`` bars on each side) clustered within ``tolerance`` (relative), ranked
  by touches, and from the volume profile (price bins weighted by volume; the
  point of control is the busiest bin).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BARS_PER_YEAR_1MIN = 252 * 390
_NEW_YORK = ZoneInfo("America/New_York")
_NS_PER_MINUTE = 60 * 1_000_000_000
_NS_PER_DAY = 86400 * 1_000_000_000


def _f(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _arr(x: npt.ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def simple_returns(close: npt.ArrayLike, windows: tuple[int, ...] = (1, 5, 15, 60, 390)
                   ) -> dict[int, float]:
    """Simple return over the last ``w`` bars for each window (NaN when too short)."""
    c = _arr(close)
    return {w: float(c[-1] / c[-1 - w] - 1.0) if c.size > w else math.nan for w in windows}


def realized_volatility(close: npt.ArrayLike, window: int,
                        bars_per_year: float = BARS_PER_YEAR_1MIN) -> float:
    """Annualised realised volatility of the last ``window`` log returns (NaN if too short)."""
    c = _arr(close)
    if window < 2 or c.size < window + 1:
        return math.nan
    r = np.diff(np.log(c[-window - 1:]))
    return float(np.std(r, ddof=1) * math.sqrt(bars_per_year))


def rolling_realized_volatility(close: npt.ArrayLike, window: int,
                                bars_per_year: float = BARS_PER_YEAR_1MIN) -> F64:
    """Realised volatility as of each bar (NaN for the first ``window`` bars)."""
    c = _arr(close)
    out = np.full(c.size, np.nan)
    if window < 2 or c.size < window + 1:
        return out
    r = np.diff(np.log(c))
    views = np.lib.stride_tricks.sliding_window_view(r, window)
    out[window:] = np.std(views, axis=1, ddof=1) * math.sqrt(bars_per_year)
    return out


def _session_keys(timestamps_ns: npt.ArrayLike) -> tuple[npt.NDArray[np.int64],
                                                         npt.NDArray[np.int64]]:
    """(New York trading date as days since epoch, minute of the New York day) per bar."""
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    utc_day = ts // _NS_PER_DAY
    offsets = {}
    for day in np.unique(utc_day):
        noon = datetime.fromtimestamp(int(day) * 86400 + 43200, tz=UTC)
        delta = noon.astimezone(_NEW_YORK).utcoffset()
        offsets[int(day)] = int(delta.total_seconds()) if delta is not None else 0
    offset_ns = np.array([offsets[int(d)] for d in utc_day], np.int64) * 1_000_000_000
    local = ts + offset_ns
    return local // _NS_PER_DAY, (local % _NS_PER_DAY) // _NS_PER_MINUTE


def relative_volume(timestamps_ns: npt.ArrayLike, volume: npt.ArrayLike,
                    lookback_days: int = 20) -> tuple[F64, F64]:
    """(relative volume, cumulative relative volume) per bar vs the same minute on past days.

    NaN where no earlier day has a bar at that minute (or its mean volume is 0).
    """
    vol = np.nan_to_num(_arr(volume))
    day, minute = _session_keys(timestamps_ns)
    days = np.unique(day)
    day_index = np.searchsorted(days, day)
    grid = np.full((days.size, 1440), np.nan)
    grid[day_index, minute] = vol
    cum = np.nancumsum(np.nan_to_num(grid), axis=1)
    seen = np.cumsum(np.isfinite(grid), axis=1) > 0
    cum = np.where(seen, cum, np.nan)
    rvol = np.full(vol.size, np.nan)
    crvol = np.full(vol.size, np.nan)
    for d in range(days.size):
        rows = np.flatnonzero(day_index == d)
        lo = max(0, d - lookback_days)
        if d == lo:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            past = grid[lo:d, minute[rows]]
            count = np.sum(np.isfinite(past), axis=0)
            mean = np.where(count > 0, np.nansum(past, axis=0) / np.maximum(count, 1), np.nan)
            rvol[rows] = np.where(mean > 0, vol[rows] / mean, np.nan)
            past_cum = cum[lo:d, minute[rows]]
            count_c = np.sum(np.isfinite(past_cum), axis=0)
            mean_c = np.where(count_c > 0,
                              np.nansum(past_cum, axis=0) / np.maximum(count_c, 1), np.nan)
            crvol[rows] = np.where(mean_c > 0, cum[d, minute[rows]] / mean_c, np.nan)
    return rvol, crvol


def unusual_volume(rvol: npt.ArrayLike, threshold: float = 2.0) -> npt.NDArray[np.bool_]:
    """True where relative volume is at least ``threshold`` (False where unknown)."""
    r = _arr(rvol)
    return np.asarray(np.nan_to_num(r, nan=0.0) >= threshold)


def daily_bars(timestamps_ns: npt.ArrayLike, open_: npt.ArrayLike, high: npt.ArrayLike,
               low: npt.ArrayLike, close: npt.ArrayLike,
               volume: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
    """Aggregate intraday bars into New York trading days (date, open, high, low, close, volume)."""
    day, _ = _session_keys(timestamps_ns)
    days, first = np.unique(day, return_index=True)
    last = np.r_[first[1:], day.size] - 1
    h, lo, v = _arr(high), _arr(low), np.nan_to_num(_arr(volume))
    return {
        "date": days.astype("datetime64[D]"),
        "open": _arr(open_)[first], "close": _arr(close)[last],
        "high": np.maximum.reduceat(h, first) if day.size else h,
        "low": np.minimum.reduceat(lo, first) if day.size else lo,
        "volume": np.add.reduceat(v, first) if day.size else v,
    }


def gaps(open_: npt.ArrayLike, previous_close: npt.ArrayLike) -> F64:
    """Opening gap ``open / previous close - 1`` (e.g. per day)."""
    return _arr(open_) / _arr(previous_close) - 1.0


def new_highs_lows(high: npt.ArrayLike, low: npt.ArrayLike,
                   window: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(new high, new low): the bar exceeds the previous ``window`` bars' high / low."""
    h, lo = _arr(high), _arr(low)
    new_high = np.zeros(h.size, bool)
    new_low = np.zeros(h.size, bool)
    if h.size > window:
        prev_h = np.lib.stride_tricks.sliding_window_view(h, window)[:-1].max(axis=1)
        prev_l = np.lib.stride_tricks.sliding_window_view(lo, window)[:-1].min(axis=1)
        new_high[window:] = h[window:] > prev_h
        new_low[window:] = lo[window:] < prev_l
    return new_high, new_low


def swing_pivots(high: npt.ArrayLike, low: npt.ArrayLike,
                 pivot: int = 5) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices of swing highs and swing lows (extreme of ``pivot`` bars on each side)."""
    h, lo = _arr(high), _arr(low)
    width = 2 * pivot + 1
    if h.size < width:
        return np.array([], np.intp), np.array([], np.intp)
    hv = np.lib.stride_tricks.sliding_window_view(h, width)
    lv = np.lib.stride_tricks.sliding_window_view(lo, width)
    centre = np.arange(pivot, h.size - pivot)
    highs = centre[(h[centre] == hv.max(axis=1)) & (np.argmax(hv, axis=1) == pivot)]
    lows = centre[(lo[centre] == lv.min(axis=1)) & (np.argmin(lv, axis=1) == pivot)]
    return highs, lows


def _cluster(levels: F64, tolerance: float) -> list[tuple[float, int]]:
    """Merge sorted price levels within ``tolerance`` (relative); (mean level, touches)."""
    out: list[tuple[float, int]] = []
    group: list[float] = []
    for x in np.sort(levels):
        if group and x > group[0] * (1 + tolerance):
            out.append((float(np.mean(group)), len(group)))
            group = []
        group.append(float(x))
    if group:
        out.append((float(np.mean(group)), len(group)))
    return out


def volume_profile(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
                   volume: npt.ArrayLike, bins: int = 50) -> tuple[F64, F64]:
    """(bin centres, volume per bin) of the typical price ``(h+l+c)/3`` weighted by volume."""
    typical = (_arr(high) + _arr(low) + _arr(close)) / 3.0
    vol = np.nan_to_num(_arr(volume))
    ok = np.isfinite(typical)
    if not ok.any():
        return np.array([]), np.array([])
    lo, hi = float(typical[ok].min()), float(typical[ok].max())
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-6, 1e-9)
    counts, edges = np.histogram(typical[ok], bins=bins, range=(lo, hi), weights=vol[ok])
    return 0.5 * (edges[:-1] + edges[1:]), counts.astype(np.float64)


def support_resistance(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
                       volume: npt.ArrayLike, pivot: int = 5, tolerance: float = 0.002,
                       max_levels: int = 3, bins: int = 50) -> dict[str, Any]:
    """Support levels below and resistance levels above the last close, strongest first."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    if c.size == 0:
        return {"support": [], "resistance": [], "point_of_control": None}
    last = float(c[-1])
    sh, sl = swing_pivots(h, lo, pivot)
    levels = _cluster(np.r_[h[sh], lo[sl]], tolerance)
    below = sorted((lv for lv in levels if lv[0] < last), key=lambda x: (-x[1], last - x[0]))
    above = sorted((lv for lv in levels if lv[0] > last), key=lambda x: (-x[1], x[0] - last))
    centres, profile = volume_profile(h, lo, c, volume, bins)
    poc = float(centres[int(np.argmax(profile))]) if profile.size and profile.max() > 0 else None

    def fmt(items: list[tuple[float, int]]) -> list[dict[str, Any]]:
        return [{"price": p, "touches": n, "source": "swing_pivots"} for p, n in
                items[:max_levels]]

    return {"support": fmt(below), "resistance": fmt(above), "point_of_control": poc}


def price_volume_summary(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                         close: npt.ArrayLike, volume: npt.ArrayLike,
                         timestamps_ns: npt.ArrayLike | None = None,
                         bars_per_year: float = BARS_PER_YEAR_1MIN) -> dict[str, Any]:
    """Returns, realised volatility, volume, gaps, highs/lows and levels; JSON-able (no NaN)."""
    o, h, lo, c, v = (_arr(a) for a in (open_, high, low, close, volume))
    if c.size == 0:
        return {"bars": 0}
    windows = (1, 5, 15, 60, 390)
    out: dict[str, Any] = {
        "bars": int(c.size),
        "last_close": _f(c[-1]),
        "returns": {f"{w}_bars": _f(r) for w, r in simple_returns(c, windows).items()},
        "realized_volatility": {f"{w}_bars": _f(realized_volatility(c, w, bars_per_year))
                                for w in (15, 60, 390) if w >= 2},
        "bars_per_year": bars_per_year,
        "range_high": _f(np.nanmax(h)), "range_low": _f(np.nanmin(lo)),
        "levels": support_resistance(h, lo, c, v),
    }
    new_high, new_low = new_highs_lows(h, lo, min(60, max(1, c.size - 1)))
    out["new_high"] = bool(new_high[-1])
    out["new_low"] = bool(new_low[-1])
    if timestamps_ns is not None:
        rvol, crvol = relative_volume(timestamps_ns, v)
        out["relative_volume"] = _f(rvol[-1])
        out["cumulative_relative_volume"] = _f(crvol[-1])
        out["unusual_volume"] = bool(unusual_volume(crvol[-1:])[0] or unusual_volume(rvol[-1:])[0])
        days = daily_bars(timestamps_ns, o, h, lo, c, v)
        if days["close"].size >= 2:
            out["gap"] = _f(gaps(days["open"][-1:], days["close"][-2:-1])[0])
            out["previous_close"] = _f(days["close"][-2])
        out["day_volume"] = _f(days["volume"][-1])
    return out
