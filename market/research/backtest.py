"""Vectorised single-position backtests of one symbol over a grid of parameter sets.

Conventions (see ``docs/research.md``):

* Fills: ``close`` trades at the close of the bar whose signal asked for it;
  ``next_open`` at the next bar's open (backtesting.py's default; a signal on the last
  bar is not filled).
* Commission: ``commission`` times the traded value, charged on entry and on exit.
* Sizing: each entry invests ``invest`` (default 1) of the cash; ``fractional`` buys
  ``cash * invest / (price * (1 + commission))`` units, ``whole`` the floor of that
  (no trade under one unit), as backtesting.py's ``buy()`` sizes an order.
* Direction: ``long`` treats a SHORT action as "be flat"; ``long_short`` reverses.
* Accounting: cash moves by commissions and realised P&L only; equity is cash plus the
  open position's P&L at the bar's close. An open position at the end stays open (its
  trade has ``exit_bar`` -1 and is marked at the last close without exit commission).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt

from core.errors import InvalidInput
from market.research.stats import STAT_NAMES, TRADING_DAYS_PER_YEAR
from market.research.strategies import Bars, IndicatorCache, Strategy

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
TRADE_COLUMNS = ("entry_bar", "entry_price", "exit_bar", "exit_price", "size", "pnl")


@dataclass(frozen=True)
class BacktestConfig:
    """How orders fill and are sized; ``periods_per_year`` annualises the statistics."""

    fill: Literal["close", "next_open"] = "close"
    commission: float = 0.0
    cash: float = 10_000.0
    size: Literal["fractional", "whole"] = "fractional"
    direction: Literal["long", "long_short"] = "long"
    invest: float = 1.0
    periods_per_year: float = TRADING_DAYS_PER_YEAR

    def __post_init__(self) -> None:
        if self.fill not in ("close", "next_open"):
            raise InvalidInput(f"fill must be close or next_open, not {self.fill!r}")
        if self.size not in ("fractional", "whole"):
            raise InvalidInput(f"size must be fractional or whole, not {self.size!r}")
        if self.direction not in ("long", "long_short"):
            raise InvalidInput(f"direction must be long or long_short, not {self.direction!r}")
        if not 0.0 <= self.commission < 0.1:
            raise InvalidInput("commission must be a rate in [0, 0.1)")
        if not (self.cash > 0 and math.isfinite(self.cash)):
            raise InvalidInput("cash must be positive")
        if not 0.0 < self.invest <= 1.0:
            raise InvalidInput("invest must be in (0, 1]")
        if not self.periods_per_year > 0:
            raise InvalidInput("periods_per_year must be positive")


@numba.njit(cache=True, error_model="numpy")
def _simulate(open_: F64, close: F64, signals: I8, next_open: bool, commission: float,
              cash0: float, invest: float, whole: bool, allow_short: bool,
              periods_per_year: float, keep_equity: bool, equity_out: F64,
              trades_out: F64, stats_out: F64) -> int:
    n = close.shape[0]
    cash = cash0
    size = 0.0
    entry = 0.0
    entry_bar = -1
    entry_fee = 0.0
    n_trades = 0
    pending = 0
    prev = cash0
    # plain sums, not Welford: its division is a loop-carried chain (about 5x slower here),
    # and bar returns are far from constant, so the variance loses no digits that matter
    total = 0.0
    total2 = 0.0
    down2 = 0.0
    peak = cash0
    peak_bar = -1
    max_dd = 0.0
    max_dd_bars = 0
    underwater = False
    exposed = 0
    wins = 0
    closed = 0
    gross_win = 0.0
    gross_loss = 0.0
    for t in range(n):
        action = 0
        price = 0.0
        if next_open:
            action = pending
            price = open_[t]
            pending = signals[t]
        else:
            action = signals[t]
            price = close[t]
        if action != 0:
            target = 0
            if action == 1:
                target = 1
            elif action == -1 and allow_short:
                target = -1
            side = 0 if size == 0.0 else (1 if size > 0.0 else -1)
            if target != side:
                if side != 0:
                    exit_fee = abs(size) * price * commission
                    gain = size * (price - entry)
                    cash += gain - exit_fee
                    pnl = gain - exit_fee - entry_fee
                    trades_out[n_trades, 0] = entry_bar
                    trades_out[n_trades, 1] = entry
                    trades_out[n_trades, 2] = t
                    trades_out[n_trades, 3] = price
                    trades_out[n_trades, 4] = size
                    trades_out[n_trades, 5] = pnl
                    n_trades += 1
                    closed += 1
                    if pnl > 0.0:
                        wins += 1
                        gross_win += pnl
                    else:
                        gross_loss -= pnl
                    size = 0.0
                if target != 0:
                    units = (cash * invest) / (price * (1.0 + commission))
                    if whole:
                        units = float(int((cash * invest) // (price * (1.0 + commission))))
                    if units > 0.0:
                        entry_fee = units * price * commission
                        cash -= entry_fee
                        size = units * target
                        entry = price
                        entry_bar = t
        equity = cash + size * (close[t] - entry) if size != 0.0 else cash
        if keep_equity:  # a sweep's runs skip the store: about a sixth of a bar's time
            equity_out[t] = equity
        # In a position the signs below flip at random from bar to bar, so they are
        # selects (min/max, conditional values) rather than branches a CPU mispredicts.
        if equity != prev:  # a flat bar's return is exactly 0: skip the division
            r = equity / prev - 1.0
            prev = equity
            total += r
            total2 += r * r
            loss = min(r, 0.0)
            down2 += loss * loss
        if equity < peak * (1.0 + max_dd):  # divide only for a possible new low (rare)
            dd = equity / peak - 1.0
            if dd < max_dd:
                max_dd = dd
        regained = equity >= peak
        # below the peak, or regaining it after being below: the drawdown lasted until now
        lasted = t - peak_bar if (underwater or not regained) else 0
        max_dd_bars = max(max_dd_bars, lasted)
        underwater = not regained
        peak_bar = t if regained else peak_bar
        peak = equity if regained else peak
        exposed += size != 0.0
    if size != 0.0:
        trades_out[n_trades, 0] = entry_bar
        trades_out[n_trades, 1] = entry
        trades_out[n_trades, 2] = -1
        trades_out[n_trades, 3] = close[n - 1]
        trades_out[n_trades, 4] = size
        trades_out[n_trades, 5] = size * (close[n - 1] - entry) - entry_fee
        n_trades += 1
    final = prev
    mean = total / n
    std = math.sqrt(max(total2 - total * mean, 0.0) / (n - 1)) if n > 1 else math.nan
    root = math.sqrt(periods_per_year)
    stats_out[0] = final / cash0 - 1.0
    stats_out[1] = (final / cash0) ** (periods_per_year / n) - 1.0 if final > 0 else -1.0
    stats_out[2] = std * root
    stats_out[3] = mean / std * root if std > 0.0 else math.nan
    downside = math.sqrt(down2 / n)
    stats_out[4] = mean / downside * root if downside > 0.0 else math.nan
    stats_out[5] = max_dd
    stats_out[6] = max_dd_bars
    stats_out[7] = n_trades
    stats_out[8] = wins / closed if closed > 0 else math.nan
    if closed == 0:
        stats_out[9] = math.nan
    elif gross_loss > 0.0:
        stats_out[9] = gross_win / gross_loss
    else:
        stats_out[9] = math.inf
    stats_out[10] = exposed / n
    stats_out[11] = final
    return n_trades


@dataclass(frozen=True)
class RunResult:
    """One parameter set's statistics (``STAT_NAMES`` order), trades and equity curve."""

    params: Mapping[str, float]
    stats: F64
    trades: F64  # rows of TRADE_COLUMNS
    equity: F64 | None

    def stat(self, name: str) -> float:
        """Return the statistic ``name`` (see :mod:`market.research.stats`)."""
        return float(self.stats[STAT_NAMES.index(name)])


def simulate(bars: Bars, signals: I8, config: BacktestConfig, *,
             equity: F64 | None = None) -> tuple[F64, F64]:
    """Trade ``signals`` on ``bars``; return (stats, trades), filling ``equity`` if given."""
    n = len(bars)
    if n < 2:
        raise InvalidInput("a backtest needs at least two bars")
    if signals.shape[0] != n:
        raise InvalidInput("signals and bars differ in length")
    capacity = int(np.count_nonzero(signals)) + 1
    trades = np.empty((capacity, len(TRADE_COLUMNS)), dtype=np.float64)
    stats = np.empty(len(STAT_NAMES), dtype=np.float64)
    if equity is not None and equity.shape[0] != n:
        raise InvalidInput("equity and bars differ in length")
    curve = equity if equity is not None else np.empty(1, dtype=np.float64)
    count = _simulate(bars.open, bars.close, signals, config.fill == "next_open",
                      config.commission, config.cash, config.invest, config.size == "whole",
                      config.direction == "long_short", config.periods_per_year,
                      equity is not None, curve, trades, stats)
    return stats, trades[:count]


def check_bars(bars: Bars) -> None:
    """Raise InvalidInput unless the prices are finite and positive."""
    for name in ("open", "close"):
        values = getattr(bars, name)
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise InvalidInput(f"{name} prices must be finite and positive")


def run_grid(bars: Bars, strategy: Strategy, param_sets: Sequence[Mapping[str, float]],
             config: BacktestConfig, *, keep_equity: bool = False) -> list[RunResult]:
    """Backtest every parameter set on one symbol's bars, sharing indicators between them."""
    check_bars(bars)
    cache = IndicatorCache(bars)
    results = []
    for params in param_sets:
        problem = strategy.check(params)
        if problem is not None:
            raise InvalidInput(f"{strategy.name} {dict(params)}: {problem}")
        signals = strategy.signal(bars, params, cache)
        curve = np.empty(len(bars), dtype=np.float64) if keep_equity else None
        stats, trades = simulate(bars, signals, config, equity=curve)
        results.append(RunResult(dict(params), stats, trades, curve))
    return results
