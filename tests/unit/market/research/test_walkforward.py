"""Walk-forward: no look-ahead, stitched equity, in-sample choice is the grid's best."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidInput
from market.research.backtest import BacktestConfig, run_grid
from market.research.grid import build_grid
from market.research.strategies import Bars, get
from market.research.walkforward import walk_forward


def _bars(seed: int, n: int) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.002, n))
    return Bars(open_, np.maximum(open_, close), np.minimum(open_, close), close, np.ones(n))


GRID = build_grid(get("sma_cross"), ["fast=3:15:3", "slow=20:60:10"])
CONFIG = BacktestConfig(fill="next_open", commission=0.001)


def test_changing_bars_after_a_split_leaves_its_choice_unchanged() -> None:
    bars = _bars(4, 3000)
    base = walk_forward(bars, get("sma_cross"), GRID, CONFIG, train=800, test=400)
    rng = np.random.default_rng(9)
    for k, split in enumerate(base.splits):
        cut = split.in_sample[1]  # every bar from the first out-of-sample one on changes
        noise = np.exp(rng.normal(0, 0.05, len(bars) - cut))
        changed = Bars(*(np.concatenate([a[:cut], a[cut:] * noise]) for a in (
            bars.open, bars.high, bars.low, bars.close)), bars.volume)
        again = walk_forward(changed, get("sma_cross"), GRID, CONFIG, train=800, test=400)
        assert again.splits[k].params == split.params
        assert np.array_equal(again.splits[k].in_sample_stats, split.in_sample_stats)
        assert np.array_equal(again.equity[:k * 400], base.equity[:k * 400])


def test_in_sample_choice_is_the_best_sharpe_of_the_grid() -> None:
    bars = _bars(5, 2000)
    result = walk_forward(bars, get("sma_cross"), GRID, CONFIG, train=1000, test=500)
    first = result.splits[0]
    window = Bars(*(a[:1000] for a in (bars.open, bars.high, bars.low, bars.close,
                                       bars.volume)))
    sharpes = [r.stat("sharpe") for r in run_grid(window, get("sma_cross"), GRID, CONFIG)]
    assert first.in_sample_stats[3] == np.nanmax(sharpes)
    assert len(result.splits) == 2
    assert len(result.equity) == 1000


def test_stitched_equity_chains_each_window_from_the_last() -> None:
    bars = _bars(6, 1500)
    result = walk_forward(bars, get("sma_cross"), GRID, CONFIG, train=500, test=250)
    ends = [s.out_of_sample_stats[-1] for s in result.splits]
    assert result.equity[249] == ends[0]
    assert result.equity[-1] == ends[-1]
    assert result.splits[1].out_of_sample_stats[0] == pytest.approx(ends[1] / ends[0] - 1)


def test_too_few_bars_raise() -> None:
    with pytest.raises(InvalidInput, match="fewer than"):
        walk_forward(_bars(1, 100), get("sma_cross"), GRID, CONFIG, train=80, test=40)
