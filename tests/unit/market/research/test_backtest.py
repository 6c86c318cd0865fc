"""The backtest engine's conventions on small hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidInput
from market.research.backtest import BacktestConfig, run_grid, simulate
from market.research.strategies import FLAT, LONG, SHORT, Bars, IndicatorCache, get, names


def _bars(open_: list[float], close: list[float]) -> Bars:
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    return Bars(o, np.maximum(o, c), np.minimum(o, c), c, np.ones_like(c))


def _signals(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int8)


def test_close_fill_long_trade_pays_commission_on_both_sides() -> None:
    bars = _bars([10, 10, 10, 10], [10, 10, 12, 12])
    config = BacktestConfig(commission=0.01, cash=1010.0)
    stats, trades = simulate(bars, _signals(LONG, 0, SHORT, 0), config)
    units = 1010.0 / (10 * 1.01)  # 100 units, 10 paid in commission
    assert trades[0, 4] == pytest.approx(units)
    assert trades[0, 5] == pytest.approx(units * 2 - 10 - units * 12 * 0.01)
    assert stats[-1] == pytest.approx(1010 + trades[0, 5])


def test_next_open_fill_trades_at_following_open() -> None:
    bars = _bars([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])
    _, trades = simulate(bars, _signals(LONG, 0, FLAT, 0), BacktestConfig(fill="next_open"))
    assert trades[0, :4].tolist() == [1, 11, 3, 13]


def test_signal_on_last_bar_with_next_open_is_not_filled() -> None:
    bars = _bars([10, 10, 10], [10, 10, 10])
    stats, trades = simulate(bars, _signals(0, 0, LONG), BacktestConfig(fill="next_open"))
    assert len(trades) == 0
    assert stats[-1] == 10_000


def test_long_only_treats_short_as_flat_and_long_short_reverses() -> None:
    bars = _bars([10] * 4, [10, 10, 8, 8])
    signals = _signals(LONG, SHORT, 0, 0)
    _, long_trades = simulate(bars, signals, BacktestConfig())
    _, both_trades = simulate(bars, signals, BacktestConfig(direction="long_short"))
    assert len(long_trades) == 1
    assert len(both_trades) == 2
    assert both_trades[1, 2] == -1  # the short is still open at the end...
    assert both_trades[1, 5] == pytest.approx(-both_trades[1, 4] * 0 + 1000 * 2)  # ...+2/unit


def test_whole_sizing_buys_floor_units_and_skips_unaffordable() -> None:
    bars = _bars([30] * 3, [30, 30, 30])
    _, trades = simulate(bars, _signals(LONG, 0, 0), BacktestConfig(size="whole", cash=100))
    assert trades[0, 4] == 3
    _, none = simulate(bars, _signals(LONG, 0, 0), BacktestConfig(size="whole", cash=20))
    assert len(none) == 0


def test_repeated_action_does_not_pyramid() -> None:
    bars = _bars([10] * 4, [10, 11, 12, 13])
    _, trades = simulate(bars, _signals(LONG, LONG, LONG, 0), BacktestConfig())
    assert len(trades) == 1


def test_statistics_follow_documented_conventions() -> None:
    bars = _bars([10] * 5, [10, 12, 9, 12, 11])
    stats, _ = simulate(bars, _signals(LONG, 0, 0, 0, 0), BacktestConfig(periods_per_year=4))
    equity = 10_000 * np.asarray([10, 12, 9, 12, 11]) / 10
    returns = np.diff(np.concatenate([[10_000.0], equity])) / np.concatenate(
        [[10_000.0], equity[:-1]])
    stat = dict(zip(
        ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
         "max_drawdown_bars", "trades", "win_rate", "profit_factor", "exposure", "final_equity"),
        stats, strict=True))
    assert stat["total_return"] == pytest.approx(0.1)
    assert stat["cagr"] == pytest.approx(1.1 ** (4 / 5) - 1)
    assert stat["volatility"] == pytest.approx(returns.std(ddof=1) * 2)
    assert stat["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * 2)
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    assert stat["sortino"] == pytest.approx(returns.mean() / downside * 2)
    assert stat["max_drawdown"] == pytest.approx(9 / 12 - 1)
    assert stat["max_drawdown_bars"] == 2  # peak at bar 1, regained at bar 3
    assert stat["trades"] == 1
    assert np.isnan(stat["win_rate"])  # no closed trade
    assert stat["exposure"] == 1.0


def test_bad_inputs_raise_clear_errors() -> None:
    bars = _bars([10, -1], [10, 10])
    with pytest.raises(InvalidInput, match="open prices"):
        run_grid(bars, get("sma_cross"), [{"fast": 2, "slow": 3}], BacktestConfig())
    good = _bars([10, 10, 10], [10, 10, 10])
    with pytest.raises(InvalidInput, match="fast must be below slow"):
        run_grid(good, get("sma_cross"), [{"fast": 5, "slow": 3}], BacktestConfig())
    with pytest.raises(InvalidInput, match="fill"):
        BacktestConfig(fill="vwap")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown strategy"):
        get("nope")


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion", "bollinger_breakout"])
def test_builtin_strategies_trade_on_a_random_walk(name: str) -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000)))
    bars = Bars(close, close, close, close, np.ones_like(close))
    params = {"sma_cross": {"fast": 10, "slow": 30}, "rsi_reversion": {
        "period": 14, "lower": 30, "upper": 70}, "bollinger_breakout": {"period": 20, "width": 2}}
    result = run_grid(bars, get(name), [params[name]], BacktestConfig(
        direction="long_short"))[0]
    assert name in names()
    assert result.stat("trades") > 10
    closed = result.trades[result.trades[:, 2] >= 0]
    assert np.all(closed[:, 2] > closed[:, 0])  # every trade exits after it enters


def test_rsi_reversion_goes_long_when_rsi_climbs_back_over_lower() -> None:
    close = np.asarray([10.0, 9, 8, 7, 6, 7, 8, 9, 10, 11, 12, 13, 14, 13], dtype=np.float64)
    bars = Bars(close, close, close, close, np.ones_like(close))
    cache = IndicatorCache(bars)
    signals = get("rsi_reversion").signal(bars, {"period": 3, "lower": 30, "upper": 70}, cache)
    rsi = cache.rsi(3)
    for i in np.nonzero(signals == LONG)[0]:
        assert rsi[i - 1] < 30 <= rsi[i]
    for i in np.nonzero(signals == SHORT)[0]:
        assert rsi[i - 1] > 70 >= rsi[i]
    assert (signals != 0).any()


def _drawdown_bars(equity: np.ndarray, initial: float) -> int:
    """Longest stretch from a peak until the curve first reaches it again (or the end)."""
    curve = np.concatenate([[initial], equity])
    longest, peak, peak_at = 0, curve[0], 0
    for i, value in enumerate(curve):
        if value >= peak:
            longest = max(longest, i - peak_at if i - peak_at > 1 else 0)
            peak, peak_at = value, i
        else:
            longest = max(longest, i - peak_at)
    return longest


@pytest.mark.parametrize(("fill", "direction"), [("close", "long"), ("next_open", "long_short")])
def test_statistics_equal_numpy_over_the_equity_curve_of_a_long_random_walk(
        fill: str, direction: str) -> None:
    rng = np.random.default_rng(11)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.003, 20_000))), 2)
    bars = Bars(close * (1 + rng.normal(0, 1e-3, close.size)), close, close, close,
                np.ones_like(close))
    signals = rng.choice(np.asarray([0, LONG, SHORT, FLAT], np.int8), close.size,
                         p=[0.97, 0.012, 0.012, 0.006])
    config = BacktestConfig(fill=fill, direction=direction, commission=0.001,  # type: ignore[arg-type]
                            periods_per_year=98_280)
    equity = np.empty(close.size)
    stats, trades = simulate(bars, signals, config, equity=equity)
    returns = np.diff(np.concatenate([[config.cash], equity])) / np.concatenate(
        [[config.cash], equity[:-1]])
    root = np.sqrt(98_280)
    stat = dict(zip(("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
                     "max_drawdown_bars", "trades"), stats, strict=False))
    assert stat["volatility"] == pytest.approx(returns.std(ddof=1) * root, rel=1e-9)
    assert stat["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * root, rel=1e-9)
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    assert stat["sortino"] == pytest.approx(returns.mean() / downside * root, rel=1e-9)
    peaks = np.maximum.accumulate(np.concatenate([[config.cash], equity]))[1:]
    assert stat["max_drawdown"] == pytest.approx(np.min(equity / peaks - 1), rel=1e-12)
    assert stat["max_drawdown_bars"] == _drawdown_bars(equity, config.cash)
    assert stat["max_drawdown_bars"] > 100
    assert stat["trades"] == len(trades) > 50
    held = np.where(trades[:, 2] >= 0, trades[:, 2], close.size) - trades[:, 0]
    assert stats[10] == held.sum() / close.size  # exposure: bars ending with a position
