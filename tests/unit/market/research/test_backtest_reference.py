"""The backtest engine against backtesting.py and vectorbt, each run here in its conventions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from market.research.backtest import BacktestConfig, run_grid, simulate
from market.research.stats import STAT_NAMES
from market.research.strategies import Bars, IndicatorCache, get


def _bars_of(frame: pd.DataFrame) -> Bars:
    columns = ("Open", "High", "Low", "Close", "Volume")
    return Bars(*(frame[c].to_numpy(np.float64) for c in columns))


def _random_bars(seed: int, n: int) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.002, n))
    return Bars(open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999,
                close, np.ones(n))


def test_sma_cross_on_goog_matches_backtesting_py_trades_and_final_equity() -> None:
    # Arrange: backtesting.py's SmaCross(10, 20), exclusive orders, on the GOOG data it ships
    from backtesting import Backtest
    from backtesting import Strategy as BtStrategy
    from backtesting.lib import crossover
    from backtesting.test import GOOG, SMA

    class SmaCross(BtStrategy):
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the last trade stays open, as here
        expected = Backtest(GOOG, SmaCross, cash=10_000, commission=0.002,
                            exclusive_orders=True).run()
    config = BacktestConfig(fill="next_open", commission=0.002, cash=10_000, size="whole",
                            direction="long_short")

    # Act
    result = run_grid(_bars_of(GOOG), get("sma_cross"), [{"fast": 10, "slow": 20}], config)[0]

    # Assert
    theirs = expected["_trades"]
    closed = result.trades[result.trades[:, 2] >= 0]
    assert len(closed) == len(theirs) == 93
    np.testing.assert_array_equal(closed[:, 0], theirs["EntryBar"])
    np.testing.assert_array_equal(closed[:, 2], theirs["ExitBar"])
    np.testing.assert_array_equal(closed[:, 1], theirs["EntryPrice"])
    np.testing.assert_array_equal(closed[:, 3], theirs["ExitPrice"])
    np.testing.assert_array_equal(closed[:, 4], theirs["Size"])
    np.testing.assert_allclose(closed[:, 5], theirs["PnL"], rtol=1e-9)
    assert result.stat("final_equity") == pytest.approx(expected["Equity Final [$]"], rel=1e-6)
    assert result.stat("max_drawdown") * 100 == pytest.approx(
        expected["Max. Drawdown [%]"], rel=1e-9)
    assert result.stat("win_rate") * 100 == pytest.approx(expected["Win Rate [%]"], rel=1e-12)


@pytest.mark.slow
def test_close_fills_match_vectorbt_from_signals_on_several_symbols() -> None:
    # vectorbt compiles for about a minute, so one test covers all symbols and parameters.
    import vectorbt as vbt

    config = BacktestConfig(fill="close", commission=0.001, cash=10_000, size="fractional",
                            direction="long", periods_per_year=252)
    index = pd.date_range("2020-01-01", periods=500, freq="D")
    for seed, (fast, slow) in [(1, (5, 20)), (2, (10, 30)), (3, (3, 12))]:
        bars = _random_bars(seed, len(index))
        signals = get("sma_cross").signal(bars, {"fast": fast, "slow": slow},
                                          IndicatorCache(bars))
        stats, _ = simulate(bars, signals, config)
        portfolio = vbt.Portfolio.from_signals(
            pd.Series(bars.close, index), entries=pd.Series(signals == 1, index),
            exits=pd.Series(signals == -1, index), fees=0.001, init_cash=10_000, freq="1D")
        ours = dict(zip(STAT_NAMES, stats, strict=True))
        assert ours["trades"] == portfolio.trades.count() > 5
        assert ours["total_return"] == pytest.approx(portfolio.total_return(), rel=1e-9)
        assert ours["max_drawdown"] == pytest.approx(portfolio.max_drawdown(), rel=1e-9)
        assert ours["sharpe"] == pytest.approx(portfolio.sharpe_ratio(year_freq="252D"),
                                               rel=1e-9)
        assert ours["sortino"] == pytest.approx(portfolio.sortino_ratio(year_freq="252D"),
                                                rel=1e-9)
        assert ours["volatility"] == pytest.approx(
            portfolio.annualized_volatility(year_freq="252D"), rel=1e-9)
        assert ours["final_equity"] == pytest.approx(portfolio.final_value(), rel=1e-9)
