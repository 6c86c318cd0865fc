"""Strategies as signal functions over bar arrays, and the registry the jobs look names up in.

A strategy turns one symbol's bars and one parameter set into an ``int8`` array of
actions, one per bar, read at the bar's close:

* ``LONG`` (1): hold a long position from the fill on (close any short first);
* ``SHORT`` (-1): hold a short position (``long_short``) or be flat (``long``);
* ``FLAT`` (2): close any position, open none;
* ``NONE`` (0): keep what is held.

An action equal to what is already held does nothing (one position at a time, no
pyramiding). To add a strategy, write ``signal(bars, params, cache) -> int8 array``
(``cache`` memoises indicators per symbol, so a grid computes ``sma(close, 10)`` once)
and call :func:`register`::

    def momentum(bars: Bars, params: Mapping[str, float], cache: IndicatorCache) -> I8:
        lookback = int(params["lookback"])
        change = bars.close - np.roll(bars.close, lookback)
        change[:lookback] = np.nan
        return cross_signals(change, np.zeros_like(change))

    register(Strategy("momentum", ("lookback",), momentum))

A ``numba.njit`` kernel inside the function keeps a sweep fast; a plain numpy one works.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numba
import numpy as np
import numpy.typing as npt

from core.errors import InvalidInput
from market import indicators

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

NONE, LONG, SHORT, FLAT = 0, 1, -1, 2


@dataclass(frozen=True)
class Bars:
    """One symbol's bars, oldest first; prices as float64 arrays of equal length."""

    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64

    def __len__(self) -> int:
        return int(self.close.shape[0])


@dataclass
class IndicatorCache:
    """Indicators of one symbol's bars, computed once per distinct argument list."""

    bars: Bars
    _values: dict[tuple[object, ...], object] = field(default_factory=dict)

    def sma(self, period: int) -> F64:
        """Return TA-Lib's SMA of the close over ``period`` bars."""
        key = ("sma", period)
        if key not in self._values:
            self._values[key] = indicators.sma(self.bars.close, period)
        value: F64 = self._values[key]  # type: ignore[assignment]
        return value

    def rsi(self, period: int) -> F64:
        """Return TA-Lib's RSI of the close over ``period`` bars (0-100)."""
        key = ("rsi", period)
        if key not in self._values:
            self._values[key] = indicators.rsi(self.bars.close, period)
        value: F64 = self._values[key]  # type: ignore[assignment]
        return value

    def bbands(self, period: int, width: float) -> tuple[F64, F64, F64]:
        """Return TA-Lib's Bollinger bands (upper, middle, lower), ``width`` deviations wide."""
        key = ("bbands", period, width)
        if key not in self._values:
            self._values[key] = indicators.bbands(self.bars.close, period, width, width)
        value: tuple[F64, F64, F64] = self._values[key]  # type: ignore[assignment]
        return value


SignalFunction = Callable[[Bars, Mapping[str, float], IndicatorCache], I8]


@dataclass(frozen=True)
class Strategy:
    """A named signal function and the names of its parameters."""

    name: str
    params: tuple[str, ...]
    signal: SignalFunction
    check: Callable[[Mapping[str, float]], str | None] = lambda params: None


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Make ``strategy`` available to the jobs under its name (a later one replaces it)."""
    _REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str) -> Strategy:
    """Return the registered strategy ``name``; raise InvalidInput if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidInput(f"unknown strategy {name!r} (known: {known})") from None


def names() -> list[str]:
    """Return the registered strategies' names, sorted."""
    return sorted(_REGISTRY)


@numba.njit(cache=True)
def _cross_kernel(a: F64, b: F64, up: int, down: int, out: I8) -> None:
    # backtesting.py's crossover(): strictly below on the previous bar, strictly above now;
    # a comparison with NaN is False, so no signal during the warm-up. Each bar's two
    # comparisons are kept for the next bar rather than made again.
    if a.shape[0] == 0:
        return
    below, above = a[0] < b[0], a[0] > b[0]
    for i in range(1, a.shape[0]):
        now_below, now_above = a[i] < b[i], a[i] > b[i]
        if below and now_above:
            out[i] = up
        elif above and now_below:
            out[i] = down
        below, above = now_below, now_above


def cross_signals(a: F64, b: F64, *, up: int = LONG, down: int = SHORT) -> I8:
    """Return ``up`` where ``a`` crosses above ``b``, ``down`` where it crosses below, else 0."""
    out = np.zeros(a.shape[0], dtype=np.int8)
    _cross_kernel(np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64),
                  up, down, out)
    return out


def _sma_cross(bars: Bars, params: Mapping[str, float], cache: IndicatorCache) -> I8:
    return cross_signals(cache.sma(int(params["fast"])), cache.sma(int(params["slow"])))


def _check_sma_cross(params: Mapping[str, float]) -> str | None:
    if params["fast"] < 2 or params["slow"] < 2:
        return "fast and slow must be at least 2"
    if params["fast"] >= params["slow"]:
        return "fast must be below slow"
    return None


@numba.njit(cache=True)
def _threshold_kernel(x: F64, lower: float, upper: float, out: I8) -> None:
    # Mean reversion: long on the bar x falls back above ``lower`` after being below it...
    for i in range(1, x.shape[0]):
        if x[i - 1] < lower <= x[i]:
            out[i] = 1
        elif x[i - 1] > upper >= x[i]:  # ...short (or out) when it falls back below ``upper``
            out[i] = -1


def _rsi_reversion(bars: Bars, params: Mapping[str, float], cache: IndicatorCache) -> I8:
    out = np.zeros(len(bars), dtype=np.int8)
    _threshold_kernel(cache.rsi(int(params["period"])), float(params["lower"]),
                      float(params["upper"]), out)
    return out


def _check_rsi(params: Mapping[str, float]) -> str | None:
    if params["period"] < 2:
        return "period must be at least 2"
    if not 0 <= params["lower"] < params["upper"] <= 100:
        return "need 0 <= lower < upper <= 100"
    return None


@numba.njit(cache=True)
def _breakout_kernel(close: F64, upper: F64, middle: F64, lower: F64, out: I8) -> None:
    # Long on a close above the upper band, short on one below the lower band (from inside
    # the bands); a close back across the middle band ends either position.
    side = 0
    for i in range(1, close.shape[0]):
        if close[i - 1] <= upper[i - 1] and close[i] > upper[i]:
            out[i] = 1
            side = 1
        elif close[i - 1] >= lower[i - 1] and close[i] < lower[i]:
            out[i] = -1
            side = -1
        elif (side == 1 and close[i] < middle[i]) or (side == -1 and close[i] > middle[i]):
            out[i] = 2
            side = 0


def _bollinger_breakout(bars: Bars, params: Mapping[str, float], cache: IndicatorCache) -> I8:
    upper, middle, lower = cache.bbands(int(params["period"]), float(params["width"]))
    out = np.zeros(len(bars), dtype=np.int8)
    _breakout_kernel(bars.close, upper, middle, lower, out)
    return out


def _check_bollinger(params: Mapping[str, float]) -> str | None:
    if params["period"] < 2:
        return "period must be at least 2"
    if params["width"] <= 0:
        return "width must be positive"
    return None


DEFAULTS: dict[str, dict[str, float]] = {
    "sma_cross": {"fast": 10, "slow": 20},
    "rsi_reversion": {"period": 14, "lower": 30, "upper": 70},
    "bollinger_breakout": {"period": 20, "width": 2.0},
}

register(Strategy("sma_cross", ("fast", "slow"), _sma_cross, _check_sma_cross))
register(Strategy("rsi_reversion", ("period", "lower", "upper"), _rsi_reversion, _check_rsi))
register(Strategy("bollinger_breakout", ("period", "width"), _bollinger_breakout,
                  _check_bollinger))
