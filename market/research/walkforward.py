"""Walk-forward optimisation: choose a grid's best parameters in sample, trade them out of sample.

Splits are in bars: split ``k`` optimises on ``[k * test, k * test + train)`` and trades
on the next ``test`` bars. Selection sees only the in-sample bars (they are sliced
before any indicator runs), so nothing after a split's in-sample window can change its
choice. Out of sample, the strategy's signals come from the bars up to each bar
(indicators warm up on the in-sample bars before it), trading starts flat at the window's
first bar, and a position still open at its end is valued at the last close; the next
window starts with that equity. The pieces chain into one equity curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from core.errors import InvalidInput
from market.research.backtest import BacktestConfig, run_grid, simulate
from market.research.stats import STAT_NAMES
from market.research.strategies import Bars, IndicatorCache, Strategy

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Split:
    """One split: bar ranges, the chosen parameters and both windows' statistics."""

    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    params: Mapping[str, float]
    in_sample_stats: F64
    out_of_sample_stats: F64


@dataclass(frozen=True)
class WalkForward:
    """The splits and the stitched out-of-sample equity (one value per out-of-sample bar)."""

    splits: list[Split]
    equity: F64
    start_bar: int


def _slice(bars: Bars, start: int, stop: int) -> Bars:
    return Bars(bars.open[start:stop], bars.high[start:stop], bars.low[start:stop],
                bars.close[start:stop], bars.volume[start:stop])


def choose(bars: Bars, strategy: Strategy, grid: Sequence[Mapping[str, float]],
           config: BacktestConfig, rank_by: str) -> tuple[Mapping[str, float], F64]:
    """Return the grid's best parameter set on ``bars`` by ``rank_by`` (first on ties/NaN)."""
    column = STAT_NAMES.index(rank_by)
    results = run_grid(bars, strategy, grid, config)
    scores = np.asarray([r.stats[column] for r in results])
    scores = np.where(np.isnan(scores), -np.inf, scores)
    best = results[int(np.argmax(scores))]
    return best.params, best.stats


def walk_forward(bars: Bars, strategy: Strategy, grid: Sequence[Mapping[str, float]],
                 config: BacktestConfig, *, train: int, test: int,
                 rank_by: str = "sharpe") -> WalkForward:
    """Run rolling in-sample selection and out-of-sample trading (see the module doc)."""
    if train < 2 or test < 2:
        raise InvalidInput("train and test must be at least 2 bars")
    if rank_by not in STAT_NAMES:
        raise InvalidInput(f"rank_by must be one of {', '.join(STAT_NAMES)}")
    n = len(bars)
    if n < train + test:
        raise InvalidInput(f"{n} bars are fewer than train + test = {train + test}")
    splits: list[Split] = []
    pieces: list[F64] = []
    cash = config.cash
    start = 0
    while start + train + test <= n:
        is_stop = start + train
        oos_stop = is_stop + test
        params, is_stats = choose(_slice(bars, start, is_stop), strategy, grid, config, rank_by)
        history = _slice(bars, start, oos_stop)
        signals = strategy.signal(history, params, IndicatorCache(history))[train:].copy()
        window = _slice(bars, is_stop, oos_stop)
        curve = np.empty(test)
        oos_stats, _ = simulate(window, signals, replace(config, cash=cash), equity=curve)
        cash = float(curve[-1])
        pieces.append(curve)
        splits.append(Split((start, is_stop), (is_stop, oos_stop), params, is_stats,
                            oos_stats))
        start += test
    return WalkForward(splits, np.concatenate(pieces), train)
