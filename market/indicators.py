"""Technical indicators over numpy arrays, matching TA-Lib's functions of the same name.

Each function takes float arrays (oldest first) and returns float64 arrays of the
same length, NaN during the warm-up, with TA-Lib's default parameters, lookbacks
and seeding rules (default compatibility, no unstable period):

* ``sma``/``bbands``: running sums as in TA-Lib; ``bbands`` uses the population
  standard deviation ``sqrt(E[x^2] - mean^2)``, 0 when that is below 1e-8.
* ``ema``: seeded with the SMA of the first ``timeperiod`` values, ``k = 2/(n+1)``.
* ``macd``: both EMAs are seeded at index ``slowperiod - 1`` (the fast one with the
  SMA of the ``fastperiod`` values ending there); all three outputs start at
  ``slowperiod + signalperiod - 2``.
* ``rsi``, ``atr``, ``adx``: Wilder smoothing; values 0 where TA-Lib treats a
  denominator under 1e-8 as zero.
* ``vwap`` has no TA-Lib twin: cumulative typical price ``(h+l+c)/3`` times volume
  over cumulative volume, restarting where ``session_start`` is True.

Leading NaNs are skipped the way TA-Lib's Python wrapper does it (computation
starts at the first index where every input is a number).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
_EPS = 1e-8  # TA-Lib's TA_IS_ZERO threshold
# 'contract' lets LLVM fuse the smoothing recurrences into FMAs; no 'nnan'/'ninf' so NaN
# checks keep working. Results differ from TA-Lib's by ~1e-15 relative.
_FASTMATH = {"contract", "nsz"}


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _sma_kernel(x: F64, period: int, out: F64) -> None:
    n = x.shape[0]
    if n < period:
        return
    total = 0.0
    for i in range(period - 1):
        total += x[i]
    for i in range(period - 1, n):
        total += x[i]
        out[i] = total / period
        total -= x[i - period + 1]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _ema_kernel(x: F64, seed_end: int, period: int, k: float, out: F64) -> None:
    """EMA seeded at ``seed_end`` with the SMA of the ``period`` values ending there."""
    n = x.shape[0]
    if seed_end >= n or seed_end - period + 1 < 0:
        return
    total = 0.0
    for i in range(seed_end - period + 1, seed_end + 1):
        total += x[i]
    prev = total / period
    out[seed_end] = prev
    keep = 1.0 - k
    for i in range(seed_end + 1, n):
        prev = x[i] * k + prev * keep  # = (x - prev) k + prev, one FMA on the critical path
        out[i] = prev


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _macd_kernel(x: F64, fast: int, slow: int, signal: int, out_line: F64, out_sig: F64,
                 out_hist: F64) -> None:
    """TA-Lib's MACD in one pass: both EMAs seeded at ``slow - 1``, signal on the line."""
    n = x.shape[0]
    if n < slow + signal - 1:
        return
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_sig = 2.0 / (signal + 1)
    total_fast = 0.0
    total_slow = 0.0
    for i in range(slow):
        total_slow += x[i]
    for i in range(slow - fast, slow):
        total_fast += x[i]
    ema_fast = total_fast / fast
    ema_slow = total_slow / slow
    first = slow + signal - 2
    total_sig = ema_fast - ema_slow
    sig = 0.0
    for i in range(slow, n):
        ema_fast = x[i] * k_fast + ema_fast * (1.0 - k_fast)
        ema_slow = x[i] * k_slow + ema_slow * (1.0 - k_slow)
        line = ema_fast - ema_slow
        if i < first:
            total_sig += line
            continue
        sig = (total_sig + line) / signal if i == first else line * k_sig + sig * (1.0 - k_sig)
        out_line[i] = line
        out_sig[i] = sig
        out_hist[i] = line - sig
    if signal == 1 and n > first:  # first == slow - 1: the seed bar itself
        line = total_fast / fast - total_slow / slow
        out_line[first] = line
        out_sig[first] = line
        out_hist[first] = 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _rsi_kernel(x: F64, period: int, out: F64) -> None:
    n = x.shape[0]
    if n <= period:
        return
    prev_value = x[0]
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        diff = x[i] - prev_value
        prev_value = x[i]
        loss -= diff if diff < 0.0 else 0.0  # selects, not branches: prices are noise
        gain += diff if diff >= 0.0 else 0.0
    loss /= period
    gain /= period
    total = gain + loss
    out[period] = 100.0 * (gain / total) if not (-_EPS < total < _EPS) else 0.0
    keep = (period - 1) / period
    inv = 1.0 / period
    for i in range(period + 1, n):
        diff = x[i] - prev_value
        prev_value = x[i]
        # Wilder: (avg (n-1) + value) / n, as avg keep + value inv (FMA, no division)
        loss = loss * keep + (-diff if diff < 0.0 else 0.0) * inv
        gain = gain * keep + (diff if diff >= 0.0 else 0.0) * inv
        total = gain + loss
        out[i] = 100.0 * (gain / total) if not (-_EPS < total < _EPS) else 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _true_range(high: float, low: float, prev_close: float) -> float:
    return max(max(high - low, abs(high - prev_close)), abs(low - prev_close))


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _atr_kernel(high: F64, low: F64, close: F64, period: int, out: F64) -> None:
    n = high.shape[0]
    if n <= period:
        return
    total = 0.0
    for i in range(1, period + 1):
        total += _true_range(high[i], low[i], close[i - 1])
    prev = total / period
    out[period] = prev
    keep = (period - 1) / period
    inv = 1.0 / period
    for i in range(period + 1, n):
        prev = prev * keep + _true_range(high[i], low[i], close[i - 1]) * inv
        out[i] = prev


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _bbands_kernel(x: F64, period: int, dev_up: float, dev_dn: float,
                   upper: F64, middle: F64, lower: F64) -> None:
    n = x.shape[0]
    if n < period:
        return
    _sma_kernel(x, period, middle)
    total2 = 0.0
    for i in range(period - 1):
        total2 += x[i] * x[i]
    for i in range(period - 1, n):
        total2 += x[i] * x[i]
        mean2 = total2 / period
        trailing = x[i - period + 1]
        total2 -= trailing * trailing
        mean2 -= middle[i] * middle[i]
        std = math.sqrt(mean2) if mean2 >= _EPS else 0.0
        if dev_up == dev_dn:
            d = std * dev_up
            upper[i] = middle[i] + d
            lower[i] = middle[i] - d
        else:
            upper[i] = middle[i] + std * dev_up
            lower[i] = middle[i] - std * dev_dn


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _stoch_kernel(high: F64, low: F64, close: F64, fastk: int, slowk: int, slowd: int,
                  out_k: F64, out_d: F64) -> None:
    n = high.shape[0]
    start = fastk - 1
    if n <= start:
        return
    fast = np.full(n, np.nan)
    for i in range(start, n):
        hh = high[i - fastk + 1]
        ll = low[i - fastk + 1]
        for j in range(i - fastk + 2, i + 1):
            if high[j] > hh:
                hh = high[j]
            if low[j] < ll:
                ll = low[j]
        diff = (hh - ll) / 100.0
        fast[i] = (close[i] - ll) / diff if diff != 0.0 else 0.0
    slow = np.full(n, np.nan)
    _sma_kernel(fast[start:], slowk, slow[start:])
    start2 = start + slowk - 1
    if n <= start2:
        return
    _sma_kernel(slow[start2:], slowd, out_d[start2:])
    begin = start2 + slowd - 1
    out_k[begin:] = slow[begin:]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _obv_kernel(close: F64, volume: F64, out: F64) -> None:
    n = close.shape[0]
    if n == 0:
        return
    prev_obv = volume[0]
    prev_close = close[0]
    out[0] = prev_obv
    for i in range(1, n):
        sign = (1.0 if close[i] > prev_close else 0.0) - (1.0 if close[i] < prev_close else 0.0)
        prev_obv += sign * volume[i]  # exact: +-volume or +0
        out[i] = prev_obv
        prev_close = close[i]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _directional(high: float, low: float, prev_high: float, prev_low: float) -> tuple[float, float]:
    """(+DM, -DM) of one bar, TA-Lib's rules."""
    diff_p = high - prev_high
    diff_m = prev_low - low
    if diff_m > 0.0 and diff_p < diff_m:
        return 0.0, diff_m
    if diff_p > 0.0 and diff_p > diff_m:
        return diff_p, 0.0
    return 0.0, 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _adx_kernel(high: F64, low: F64, close: F64, period: int, out: F64) -> None:
    n = high.shape[0]
    lookback = 2 * period - 1
    if n <= lookback:
        return
    plus_dm = 0.0
    minus_dm = 0.0
    tr = 0.0
    for i in range(1, period):
        p, m = _directional(high[i], low[i], high[i - 1], low[i - 1])
        plus_dm += p
        minus_dm += m
        tr += _true_range(high[i], low[i], close[i - 1])
    sum_dx = 0.0
    adx = 0.0
    keep = (period - 1) / period
    inv = 1.0 / period
    for i in range(period, n):
        p, m = _directional(high[i], low[i], high[i - 1], low[i - 1])
        minus_dm -= minus_dm / period
        plus_dm -= plus_dm / period
        minus_dm += m
        plus_dm += p
        tr = tr - tr / period + _true_range(high[i], low[i], close[i - 1])
        dx = math.nan
        if not (-_EPS < tr < _EPS):
            minus_di = 100.0 * (minus_dm / tr)
            plus_di = 100.0 * (plus_dm / tr)
            total = minus_di + plus_di
            if not (-_EPS < total < _EPS):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        if i < lookback:
            if dx == dx:
                sum_dx += dx
        elif i == lookback:
            if dx == dx:
                sum_dx += dx
            adx = sum_dx / period
            out[i] = adx
        else:
            if dx == dx:
                adx = adx * keep + dx * inv
            out[i] = adx


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _vwap_kernel(high: F64, low: F64, close: F64, volume: F64,
                 session_start: npt.NDArray[np.bool_], out: F64) -> None:
    pv = 0.0
    vol = 0.0
    for i in range(high.shape[0]):
        if session_start[i]:
            pv = 0.0
            vol = 0.0
        pv += (high[i] + low[i] + close[i]) / 3.0 * volume[i]
        vol += volume[i]
        out[i] = pv / vol if vol > 0.0 else math.nan


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _first_number(x: F64) -> int:
    for i in range(x.shape[0]):
        if x[i] == x[i]:
            return i
    n: int = x.shape[0]
    return n


def _inputs(*arrays: npt.ArrayLike) -> tuple[int, list[F64]]:
    """Float64 views of ``arrays`` and the first index where all are numbers."""
    xs = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    n = xs[0].shape[0]
    if any(x.ndim != 1 or x.shape[0] != n for x in xs):
        raise ValueError("inputs must be 1-D arrays of the same length")
    begin = max(int(_first_number(x)) for x in xs)  # numba returns an int
    return begin, [x[begin:] for x in xs]


def _output(n: int, head: int) -> F64:
    """An output array whose first ``head`` values are NaN (the kernel writes the rest)."""
    out = np.empty(n)
    out[: min(head, n)] = np.nan
    return out


def _period(value: int, minimum: int = 2) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"period must be an integer >= {minimum}")
    return int(value)


def sma(close: npt.ArrayLike, timeperiod: int = 30) -> F64:
    """Simple moving average (TA-Lib ``SMA``); NaN for the first ``timeperiod - 1``."""
    period = _period(timeperiod, 1)
    begin, (x,) = _inputs(close)
    out = _output(begin + x.shape[0], begin + period - 1)
    _sma_kernel(x, period, out[begin:])
    return out


def ema(close: npt.ArrayLike, timeperiod: int = 30) -> F64:
    """Exponential moving average (TA-Lib ``EMA``), seeded with the first SMA."""
    period = _period(timeperiod, 1)
    begin, (x,) = _inputs(close)
    out = _output(begin + x.shape[0], begin + period - 1)
    _ema_kernel(x, period - 1, period, 2.0 / (period + 1), out[begin:])
    return out


def rsi(close: npt.ArrayLike, timeperiod: int = 14) -> F64:
    """Relative strength index (TA-Lib ``RSI``, Wilder), 0..100; first value at ``timeperiod``."""
    period = _period(timeperiod)
    begin, (x,) = _inputs(close)
    out = _output(begin + x.shape[0], begin + period)
    _rsi_kernel(x, period, out[begin:])
    return out


def macd(close: npt.ArrayLike, fastperiod: int = 12, slowperiod: int = 26,
         signalperiod: int = 9) -> tuple[F64, F64, F64]:
    """MACD line, signal and histogram (TA-Lib ``MACD``); first values at slow+signal-2."""
    fast, slow = _period(fastperiod), _period(slowperiod)
    signal = _period(signalperiod, 1)
    if slow < fast:
        fast, slow = slow, fast
    begin, (x,) = _inputs(close)
    n = begin + x.shape[0]
    head = begin + slow + signal - 2
    out_line, out_sig, out_hist = (_output(n, head) for _ in range(3))
    _macd_kernel(x, fast, slow, signal, out_line[begin:], out_sig[begin:], out_hist[begin:])
    return out_line, out_sig, out_hist


def bbands(close: npt.ArrayLike, timeperiod: int = 20, nbdevup: float = 2.0,
           nbdevdn: float = 2.0) -> tuple[F64, F64, F64]:
    """Bollinger bands (TA-Lib ``BBANDS`` with an SMA): (upper, middle, lower)."""
    period = _period(timeperiod)
    begin, (x,) = _inputs(close)
    n = begin + x.shape[0]
    upper, middle, lower = (_output(n, begin + period - 1) for _ in range(3))
    _bbands_kernel(x, period, float(nbdevup), float(nbdevdn), upper[begin:], middle[begin:],
                   lower[begin:])
    return upper, middle, lower


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
        timeperiod: int = 14) -> F64:
    """Average true range (TA-Lib ``ATR``, Wilder); first value at ``timeperiod``."""
    period = _period(timeperiod)
    begin, (h, lo, c) = _inputs(high, low, close)
    out = _output(begin + h.shape[0], begin + period)
    _atr_kernel(h, lo, c, period, out[begin:])
    return out


def stoch(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
          fastk_period: int = 5, slowk_period: int = 3,
          slowd_period: int = 3) -> tuple[F64, F64]:
    """Slow stochastic (TA-Lib ``STOCH`` with SMAs): (slowk, slowd), 0..100."""
    fk, sk, sd = _period(fastk_period, 1), _period(slowk_period, 1), _period(slowd_period, 1)
    begin, (h, lo, c) = _inputs(high, low, close)
    n = begin + h.shape[0]
    head = begin + fk + sk + sd - 3
    out_k, out_d = _output(n, head), _output(n, head)
    _stoch_kernel(h, lo, c, fk, sk, sd, out_k[begin:], out_d[begin:])
    return out_k, out_d


def obv(close: npt.ArrayLike, volume: npt.ArrayLike) -> F64:
    """On-balance volume (TA-Lib ``OBV``): starts at the first bar's volume."""
    begin, (c, v) = _inputs(close, volume)
    out = _output(begin + c.shape[0], begin)
    _obv_kernel(c, v, out[begin:])
    return out


def adx(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
        timeperiod: int = 14) -> F64:
    """Average directional index (TA-Lib ``ADX``); first value at ``2 * timeperiod - 1``."""
    period = _period(timeperiod)
    begin, (h, lo, c) = _inputs(high, low, close)
    out = _output(begin + h.shape[0], begin + 2 * period - 1)
    _adx_kernel(h, lo, c, period, out[begin:])
    return out


def vwap(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike,
         volume: npt.ArrayLike, session_start: npt.ArrayLike | None = None) -> F64:
    """Volume-weighted average price: cumulative ``(h+l+c)/3 * volume`` over volume.

    Sums restart at each bar where ``session_start`` is True (e.g. the first bar
    of each trading day); NaN while the cumulative volume is 0.
    """
    h, lo, c, v = (np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close, volume))
    n = h.shape[0]
    starts = (np.zeros(n, np.bool_) if session_start is None
              else np.ascontiguousarray(session_start, dtype=np.bool_))
    out = np.empty(n)
    _vwap_kernel(h, lo, c, v, starts, out)
    return out
