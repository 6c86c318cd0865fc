"""Backtest statistics: their names, order and conventions (what each number means).

Every statistic comes from the equity curve ``E_t`` (cash plus the open position marked
at each bar's close, after that bar's fills) and the initial cash ``E_-1``:

* ``total_return``: ``E_end / E_-1 - 1``.
* ``cagr``: ``(E_end / E_-1) ** (P / n) - 1``, ``n`` bars, ``P`` bars per year.
* ``volatility``: the standard deviation (``ddof=1``) of the bar returns
  ``r_t = E_t / E_t-1 - 1`` (the first one against the initial cash), times ``sqrt(P)``.
* ``sharpe``: ``mean(r) / std(r, ddof=1) * sqrt(P)``, risk-free rate 0 (vectorbt's
  convention); NaN when the returns do not vary.
* ``sortino``: ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)`` (vectorbt's); NaN without a
  losing bar.
* ``max_drawdown``: ``min(E_t / max(E_-1..E_t) - 1)``, a fraction ``<= 0``.
* ``max_drawdown_bars``: the longest stretch, in bars, from a peak of the equity until it
  is first reached again (or the end).
* ``trades``: round trips entered, the one still open at the end included.
* ``win_rate``: closed trades with a positive P&L (commissions included) over closed trades.
* ``profit_factor``: gross profit over gross loss of the closed trades (``inf`` without a
  loss, NaN without a trade).
* ``exposure``: the fraction of bars that end with a position open.
* ``final_equity``: ``E_end`` in cash units.

``P`` (``periods_per_year``) is the caller's: the jobs infer it from the timestamps
(252 for daily bars; 252 times the median bars per day for intraday bars).
"""

from __future__ import annotations

STAT_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_bars",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
    "final_equity",
)
STAT_INDEX = {name: i for i, name in enumerate(STAT_NAMES)}
TRADING_DAYS_PER_YEAR = 252
