"""O(1)-per-bar indicator state for many symbols at once (struct of arrays, numba).

:class:`IndicatorBank` holds, for each of ``capacity`` symbol slots, the running
state of every indicator in :data:`INDICATOR_NAMES`. Committing a closed bar costs
O(1) per slot and gives, at every step, the values the batch functions of
:mod:`market.indicators` (and so TA-Lib) give for the same bars:

=================  ===============================================
``sma_20``         ``SMA(close, 20)``
``ema_20``         ``EMA(close, 20)``
``rsi_14``         ``RSI(close, 14)``
``macd*``          ``MACD(close, 12, 26, 9)`` (line, signal, hist)
``bb_*``           ``BBANDS(close, 20, 2, 2)`` (upper, middle, lower)
``atr_14``         ``ATR(high, low, close, 14)``
``vwap``           session VWAP (restarts on :meth:`reset_session`)
``stoch_k/_d``     ``STOCH(high, low, close, 5, 3, 3)`` (slow %K, %D)
``obv``            ``OBV(close, volume)``
``adx_14``         ``ADX(high, low, close, 14)``
=================  ===============================================

Values are NaN while an indicator warms up. A bar whose high, low or close is
not finite, or whose volume is negative or not finite, is skipped (not committed):
one bad print must not poison a symbol's state for good.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

INDICATOR_NAMES: tuple[str, ...] = (
    "sma_20", "ema_20", "rsi_14", "macd", "macd_signal", "macd_hist",
    "bb_upper", "bb_middle", "bb_lower", "atr_14", "vwap",
    "stoch_k", "stoch_d", "obv", "adx_14",
)
_N_OUT = len(INDICATOR_NAMES)

# Output columns
_O_SMA, _O_EMA, _O_RSI, _O_MACD, _O_SIG, _O_HIST = 0, 1, 2, 3, 4, 5
_O_BBU, _O_BBM, _O_BBL, _O_ATR, _O_VWAP = 6, 7, 8, 9, 10
_O_K, _O_D, _O_OBV, _O_ADX = 11, 12, 13, 14

# State fields (one float64 row per slot)
_S_SUM, _S_SUM2, _S_EMA, _S_PREV_C, _S_GAIN, _S_LOSS = 0, 1, 2, 3, 4, 5
_S_SLOW_SUM, _S_FAST, _S_SLOW, _S_SIG_SUM, _S_SIG = 6, 7, 8, 9, 10
_S_TR_SUM, _S_ATR, _S_PV, _S_VOL, _S_K_SUM, _S_D_SUM, _S_OBV = 11, 12, 13, 14, 15, 16, 17
_S_PREV_H, _S_PREV_L, _S_PDM, _S_MDM, _S_TR, _S_DX_SUM, _S_ADX = 18, 19, 20, 21, 22, 23, 24
_N_STATE = 25

# Ring buffers (per slot): close, high, low, fast %K, slow %K; the newest bar at count & 31
_R_CLOSE, _R_HIGH, _R_LOW, _R_FASTK, _R_SLOWK = 0, 1, 2, 3, 4
_RING = 32
_MASK = _RING - 1

_SMA_N, _BB_DEV, _EMA_N, _RSI_N = 20, 2.0, 20, 14
_MACD_FAST, _MACD_SLOW, _MACD_SIG = 12, 26, 9
_ATR_N, _ADX_N, _K_N, _KS_N, _D_N = 14, 14, 5, 3, 3
_EPS = 1e-8  # TA-Lib's TA_IS_ZERO threshold
_FASTMATH = {"contract", "nsz"}  # the same flags as market.indicators' kernels


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _step(st: F64, ring: F64, t: int, high: float, low: float, close: float, volume: float,
          out: F64) -> None:
    """Commit bar number ``t`` (0-based) into ``st``/``ring``; write all values to ``out``."""
    nan = math.nan
    for j in range(_N_OUT):
        out[j] = nan
    pos = t & _MASK
    ring[_R_CLOSE, pos] = close
    ring[_R_HIGH, pos] = high
    ring[_R_LOW, pos] = low
    prev_c = st[_S_PREV_C]

    # SMA 20 and Bollinger bands (20, 2): TA-Lib's running sums
    st[_S_SUM] += close
    st[_S_SUM2] += close * close
    if t >= _SMA_N - 1:
        mid = st[_S_SUM] / _SMA_N
        old = ring[_R_CLOSE, (t - _SMA_N + 1) & _MASK]
        st[_S_SUM] -= old
        mean2 = st[_S_SUM2] / _SMA_N
        st[_S_SUM2] -= old * old
        mean2 -= mid * mid
        std = math.sqrt(mean2) if mean2 >= _EPS else 0.0
        d = std * _BB_DEV
        out[_O_SMA] = mid
        out[_O_BBM] = mid
        out[_O_BBU] = mid + d
        out[_O_BBL] = mid - d

    # EMA 20, seeded with the first SMA
    if t < _EMA_N - 1:
        st[_S_EMA] += close
    elif t == _EMA_N - 1:
        st[_S_EMA] = (st[_S_EMA] + close) / _EMA_N
        out[_O_EMA] = st[_S_EMA]
    else:
        k = 2.0 / (_EMA_N + 1)
        st[_S_EMA] = close * k + st[_S_EMA] * (1.0 - k)
        out[_O_EMA] = st[_S_EMA]

    # RSI 14 (Wilder)
    if t >= 1:
        diff = close - prev_c
        if t <= _RSI_N:
            st[_S_LOSS] -= diff if diff < 0.0 else 0.0
            st[_S_GAIN] += diff if diff >= 0.0 else 0.0
            if t == _RSI_N:
                st[_S_LOSS] /= _RSI_N
                st[_S_GAIN] /= _RSI_N
        else:
            keep = (_RSI_N - 1) / _RSI_N
            inv = 1.0 / _RSI_N
            st[_S_LOSS] = st[_S_LOSS] * keep + (-diff if diff < 0.0 else 0.0) * inv
            st[_S_GAIN] = st[_S_GAIN] * keep + (diff if diff >= 0.0 else 0.0) * inv
        if t >= _RSI_N:
            total = st[_S_GAIN] + st[_S_LOSS]
            out[_O_RSI] = 100.0 * (st[_S_GAIN] / total) if not (-_EPS < total < _EPS) else 0.0

    # MACD (12, 26, 9): both EMAs seeded at bar 25, the signal on the line
    if t < _MACD_SLOW - 1:
        st[_S_SLOW_SUM] += close
    elif t == _MACD_SLOW - 1:
        st[_S_SLOW] = (st[_S_SLOW_SUM] + close) / _MACD_SLOW
        total = 0.0
        for j in range(t - _MACD_FAST + 1, t + 1):
            total += ring[_R_CLOSE, j & _MASK]
        st[_S_FAST] = total / _MACD_FAST
        st[_S_SIG_SUM] = st[_S_FAST] - st[_S_SLOW]
    else:
        kf = 2.0 / (_MACD_FAST + 1)
        ks = 2.0 / (_MACD_SLOW + 1)
        st[_S_FAST] = close * kf + st[_S_FAST] * (1.0 - kf)
        st[_S_SLOW] = close * ks + st[_S_SLOW] * (1.0 - ks)
        line = st[_S_FAST] - st[_S_SLOW]
        first = _MACD_SLOW + _MACD_SIG - 2
        if t < first:
            st[_S_SIG_SUM] += line
        else:
            if t == first:
                st[_S_SIG] = (st[_S_SIG_SUM] + line) / _MACD_SIG
            else:
                kg = 2.0 / (_MACD_SIG + 1)
                st[_S_SIG] = line * kg + st[_S_SIG] * (1.0 - kg)
            out[_O_MACD] = line
            out[_O_SIG] = st[_S_SIG]
            out[_O_HIST] = line - st[_S_SIG]

    # ATR 14 and ADX 14 share the true range
    if t >= 1:
        tr = max(max(high - low, abs(high - prev_c)), abs(low - prev_c))
        if t <= _ATR_N:
            st[_S_TR_SUM] += tr
            if t == _ATR_N:
                st[_S_ATR] = st[_S_TR_SUM] / _ATR_N
        else:
            st[_S_ATR] = st[_S_ATR] * ((_ATR_N - 1) / _ATR_N) + tr * (1.0 / _ATR_N)
        if t >= _ATR_N:
            out[_O_ATR] = st[_S_ATR]

        diff_p = high - st[_S_PREV_H]
        diff_m = st[_S_PREV_L] - low
        plus = 0.0
        minus = 0.0
        if diff_m > 0.0 and diff_p < diff_m:
            minus = diff_m
        elif diff_p > 0.0 and diff_p > diff_m:
            plus = diff_p
        if t < _ADX_N:
            st[_S_PDM] += plus
            st[_S_MDM] += minus
            st[_S_TR] += tr
        else:
            st[_S_MDM] -= st[_S_MDM] / _ADX_N
            st[_S_PDM] -= st[_S_PDM] / _ADX_N
            st[_S_MDM] += minus
            st[_S_PDM] += plus
            st[_S_TR] = st[_S_TR] - st[_S_TR] / _ADX_N + tr
            dx = nan
            if not (-_EPS < st[_S_TR] < _EPS):
                minus_di = 100.0 * (st[_S_MDM] / st[_S_TR])
                plus_di = 100.0 * (st[_S_PDM] / st[_S_TR])
                total = minus_di + plus_di
                if not (-_EPS < total < _EPS):
                    dx = 100.0 * (abs(minus_di - plus_di) / total)
            lookback = 2 * _ADX_N - 1
            if t <= lookback:
                if dx == dx:
                    st[_S_DX_SUM] += dx
                if t == lookback:
                    st[_S_ADX] = st[_S_DX_SUM] / _ADX_N
            elif dx == dx:
                st[_S_ADX] = st[_S_ADX] * ((_ADX_N - 1) / _ADX_N) + dx * (1.0 / _ADX_N)
            if t >= lookback:
                out[_O_ADX] = st[_S_ADX]

    # Session VWAP
    st[_S_PV] += (high + low + close) / 3.0 * volume
    st[_S_VOL] += volume
    if st[_S_VOL] > 0.0:
        out[_O_VWAP] = st[_S_PV] / st[_S_VOL]

    # Slow stochastic (5, 3, 3) with SMAs
    if t >= _K_N - 1:
        hh = high
        ll = low
        for j in range(t - _K_N + 1, t):
            hh = max(hh, ring[_R_HIGH, j & _MASK])
            ll = min(ll, ring[_R_LOW, j & _MASK])
        rng = (hh - ll) / 100.0
        fast = (close - ll) / rng if rng != 0.0 else 0.0
        ring[_R_FASTK, pos] = fast
        u = t - (_K_N - 1)  # index in the fast %K series
        st[_S_K_SUM] += fast
        if u >= _KS_N - 1:
            slow = st[_S_K_SUM] / _KS_N
            st[_S_K_SUM] -= ring[_R_FASTK, (t - _KS_N + 1) & _MASK]
            ring[_R_SLOWK, pos] = slow
            w = u - (_KS_N - 1)  # index in the slow %K series
            st[_S_D_SUM] += slow
            if w >= _D_N - 1:
                out[_O_K] = slow
                out[_O_D] = st[_S_D_SUM] / _D_N
                st[_S_D_SUM] -= ring[_R_SLOWK, (t - _D_N + 1) & _MASK]

    # OBV
    if t == 0:
        st[_S_OBV] = volume
    else:
        sign = (1.0 if close > prev_c else 0.0) - (1.0 if close < prev_c else 0.0)
        st[_S_OBV] += sign * volume
    out[_O_OBV] = st[_S_OBV]

    st[_S_PREV_C] = close
    st[_S_PREV_H] = high
    st[_S_PREV_L] = low


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _bar_ok(high: float, low: float, close: float, volume: float) -> bool:
    return (math.isfinite(high) and math.isfinite(low) and math.isfinite(close)
            and math.isfinite(volume) and volume >= 0.0)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _update_kernel(state: F64, ring: F64, count: npt.NDArray[np.int64], last: F64,
                   undo_state: F64, undo_ring: F64, undo_last: F64,
                   undo_ok: npt.NDArray[np.bool_], keep_undo: bool, slots: npt.NDArray[np.int32],
                   high: F64, low: F64, close: F64, volume: F64, out: F64) -> None:
    for i in range(slots.shape[0]):
        s = slots[i]
        if _bar_ok(high[i], low[i], close[i], volume[i]):
            undo_ok[s] = keep_undo
            if keep_undo:  # what this commit overwrites, so replace_last can take it back
                pos = count[s] & _MASK
                undo_state[s, :] = state[s]
                undo_ring[s, :] = ring[s, :, pos]
                undo_last[s, :] = last[s]
            _step(state[s], ring[s], count[s], high[i], low[i], close[i], volume[i], last[s])
            count[s] += 1
        else:
            undo_ok[s] = False
        out[i] = last[s]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _replace_kernel(state: F64, ring: F64, count: npt.NDArray[np.int64], last: F64,
                    undo_state: F64, undo_ring: F64, undo_last: F64,
                    undo_ok: npt.NDArray[np.bool_], once: npt.NDArray[np.bool_],
                    slots: npt.NDArray[np.int32], high: F64, low: F64, close: F64, volume: F64,
                    out: F64, done: npt.NDArray[np.bool_]) -> None:
    for i in range(slots.shape[0]):
        s = slots[i]
        done[i] = (once[i] and undo_ok[s] and count[s] > 0
                   and _bar_ok(high[i], low[i], close[i], volume[i]))
        if not done[i]:
            continue
        t = count[s] - 1
        state[s, :] = undo_state[s]
        ring[s, :, t & _MASK] = undo_ring[s]
        last[s, :] = undo_last[s]
        _step(state[s], ring[s], t, high[i], low[i], close[i], volume[i], last[s])
        out[i] = last[s]


class IndicatorBank:
    """Running indicator state of ``capacity`` symbol slots (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._state = np.zeros((capacity, _N_STATE))
        self._ring = np.zeros((capacity, 5, _RING))
        self._count = np.zeros(capacity, np.int64)
        self._last = np.full((capacity, _N_OUT), np.nan)
        # Each slot's state, overwritten ring column and values before its last commit.
        self._undo_state = np.zeros((capacity, _N_STATE))
        self._undo_ring = np.zeros((capacity, 5))
        self._undo_last = np.full((capacity, _N_OUT), np.nan)
        self._undo_ok = np.zeros(capacity, np.bool_)

    def update(self, slots: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
               close: npt.ArrayLike, volume: npt.ArrayLike, *, undo: bool = True) -> F64:
        """Commit closed bars in row order (a slot may appear several times).

        Returns a ``(len(slots), len(INDICATOR_NAMES))`` array: the values as of
        each committed bar (NaN while warming up). A bar with non-finite prices
        or a bad volume is skipped and its row repeats the slot's last values.
        With ``undo`` (the default) each slot's last commit can be replaced by
        :meth:`replace_last`; bulk loads turn it off.
        """
        s, (h, lo, c, v) = self._columns(slots, high, low, close, volume)
        out = np.empty((s.shape[0], _N_OUT))
        _update_kernel(self._state, self._ring, self._count, self._last, self._undo_state,
                       self._undo_ring, self._undo_last, self._undo_ok, undo, s,
                       h, lo, c, v, out)
        return out

    def replace_last(self, slots: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                     close: npt.ArrayLike, volume: npt.ArrayLike
                     ) -> tuple[npt.NDArray[np.bool_], F64]:
        """Replace each slot's last committed bar by another (a vendor's bar for the minute).

        O(1) per slot: the state before that commit is restored and the new bar committed
        in its place, giving the values a full recomputation would. Returns ``(done,
        values)``; ``done`` is False (values NaN) where it cannot be done in place: nothing
        committed, the last commit kept no undo, was skipped or reset since, the new bar
        is bad, or the slot appears twice in ``slots``. A session reset between that
        commit and this call (:meth:`reset_session`) is undone as well, so callers check
        session boundaries.
        """
        s, (h, lo, c, v) = self._columns(slots, high, low, close, volume)
        out = np.full((s.shape[0], _N_OUT), np.nan)
        done = np.zeros(s.shape[0], np.bool_)
        _, first, counts = np.unique(s, return_index=True, return_counts=True)
        once = np.zeros(s.shape[0], np.bool_)
        once[first[counts == 1]] = True  # a slot named twice is not replaced
        _replace_kernel(self._state, self._ring, self._count, self._last, self._undo_state,
                        self._undo_ring, self._undo_last, self._undo_ok, once, s,
                        h, lo, c, v, out, done)
        return done, out

    def _columns(self, slots: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
                 close: npt.ArrayLike, volume: npt.ArrayLike) -> tuple[npt.NDArray[np.int32],
                                                                       list[F64]]:
        """Slots and the four bar columns as contiguous arrays, checked."""
        s = np.ascontiguousarray(slots, dtype=np.int32)
        cols = [np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close, volume)]
        if any(c.shape != s.shape for c in cols) or s.ndim != 1:
            raise ValueError("slots, high, low, close and volume must be 1-D of one length")
        if s.size and (int(s.min()) < 0 or int(s.max()) >= self.capacity):
            raise IndexError("slot out of range")
        return s, cols

    def peek(self, slot: int, high: float, low: float, close: float,
             volume: float) -> dict[str, float]:
        """Values if a bar with these figures closed now; the state is left unchanged."""
        if not _bar_ok(high, low, close, volume):
            return self.values(slot)
        st = self._state[slot].copy()
        ring = self._ring[slot].copy()
        out = np.empty(_N_OUT)
        _step(st, ring, int(self._count[slot]), float(high), float(low), float(close),
              float(volume), out)
        return dict(zip(INDICATOR_NAMES, out.tolist(), strict=True))

    def values(self, slot: int) -> dict[str, float]:
        """Values as of the slot's last committed bar (NaN before any)."""
        return dict(zip(INDICATOR_NAMES, self._last[slot].tolist(), strict=True))

    def bars(self, slot: int) -> int:
        """Number of bars committed to ``slot`` since its last :meth:`reset`."""
        return int(self._count[slot])

    def reset_session(self, slots: npt.ArrayLike) -> None:
        """Start a new VWAP session (new trading day) for ``slots``."""
        s = np.asarray(slots, dtype=np.int64)
        self._state[s, _S_PV] = 0.0
        self._state[s, _S_VOL] = 0.0

    def reset(self, slots: npt.ArrayLike) -> None:
        """Forget everything about ``slots``."""
        s = np.asarray(slots, dtype=np.int64)
        self._state[s] = 0.0
        self._ring[s] = 0.0
        self._count[s] = 0
        self._last[s] = np.nan
        self._undo_ok[s] = False
