"""MarketState: ticks → bars → indicators, checked against hand aggregation and TA-Lib."""

import numpy as np
import pytest
import talib

from market.feeds.base import NS_PER_MINUTE, QUOTE, TRADE, BarBatch, TickBatch
from market.state import MarketState

T0 = 1_764_000_000 * 1_000_000_000 - (1_764_000_000 * 1_000_000_000) % NS_PER_MINUTE  # minute
NAN = np.nan


def trades(symbol_id, ts, price, size):
    n = len(ts)
    return TickBatch.from_columns(kind=np.full(n, TRADE), symbol_id=np.full(n, symbol_id),
                                  ts_ns=ts, price=price, size=size, bid=np.full(n, NAN),
                                  ask=np.full(n, NAN), bid_size=np.full(n, NAN),
                                  ask_size=np.full(n, NAN))


def random_walk(n_minutes, per_minute, seed=3, start=T0):
    rng = np.random.default_rng(seed)
    n = n_minutes * per_minute
    ts = start + np.sort(rng.integers(0, n_minutes * NS_PER_MINUTE, n))
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    size = rng.integers(1, 500, n).astype(float)
    return ts, price, size


def hand_bars(ts, price, size):
    minute = ts - ts % NS_PER_MINUTE
    out = []
    for m in np.unique(minute):
        sel = minute == m
        p = price[sel]
        out.append((m, p[0], p.max(), p.min(), p[-1], size[sel].sum()))
    return np.array(out)


def test_trades_aggregate_into_minute_bars_like_hand_computation():
    ts, price, size = random_walk(30, 40)
    state = MarketState(["AAPL"], ["AAPL"])
    for chunk in np.array_split(np.arange(len(ts)), 17):  # batch boundaries mid-minute
        state.apply(trades(0, ts[chunk], price[chunk], size[chunk]))
    expected = hand_bars(ts, price, size)[:-1]  # the last minute is still forming
    bars = state.bars("AAPL", 1_000)
    got = np.array([(int(b.timestamp.timestamp() * 1e9), b.open, b.high, b.low, b.close,
                     b.volume) for b in bars])
    assert len(bars) == len(expected)
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[:, 0].astype(np.int64), expected[:, 0].astype(np.int64))


def test_bar_indicators_match_talib_at_every_close():
    ts, price, size = random_walk(80, 20, seed=11)
    state = MarketState(["MSFT"], ["MSFT"])
    state.apply(trades(0, ts, price, size))
    bars = state.bars("MSFT", 1_000)
    close = np.array([b.close for b in bars])
    high = np.array([b.high for b in bars])
    low = np.array([b.low for b in bars])
    sma = np.array([b.model_extra["sma_20"] for b in bars], dtype=float)
    rsi = np.array([b.model_extra["rsi_14"] for b in bars], dtype=float)
    atr = np.array([b.model_extra["atr_14"] for b in bars], dtype=float)
    np.testing.assert_allclose(sma, talib.SMA(close, 20), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(rsi, talib.RSI(close, 14), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(atr, talib.ATR(high, low, close, 14), rtol=1e-9, equal_nan=True)


def test_live_indicators_treat_forming_bar_as_closing_at_last_price():
    ts, price, size = random_walk(40, 10, seed=5)
    state = MarketState(["NVDA"], ["NVDA"])
    state.apply(trades(0, ts, price, size))
    closes = [b.close for b in state.bars("NVDA", 1_000)] + [price[-1]]
    live = state.snapshot("NVDA").indicators
    assert live["sma_20"] == pytest.approx(talib.SMA(np.array(closes), 20)[-1], rel=1e-9)


def test_quotes_update_bid_ask_and_bad_ticks_are_counted_not_applied():
    state = MarketState(["AAPL"], ["AAPL"])
    state.apply(trades(0, np.array([T0 + 1]), np.array([100.0]), np.array([10.0])))
    batch = TickBatch.from_columns(
        kind=[QUOTE, QUOTE, TRADE, TRADE], symbol_id=[0, 0, 0, 0],
        ts_ns=[T0 + 2, T0 + 3, T0 + 4, T0 + 5], price=[NAN, NAN, -1.0, NAN],
        size=[NAN, NAN, 5.0, 1.0], bid=[99.9, 101.0, NAN, NAN], ask=[100.1, 100.0, NAN, NAN],
        bid_size=[3.0, 1.0, NAN, NAN], ask_size=[4.0, 1.0, NAN, NAN])
    state.apply(batch)
    snap = state.snapshot("AAPL")
    assert (snap.bid, snap.ask, snap.price, snap.volume) == (99.9, 100.1, 100.0, 10.0)
    assert state.rejected == 3  # crossed quote, negative price, NaN price


def test_ticks_of_symbols_owned_elsewhere_are_ignored():
    state = MarketState(["MSFT"], ["AAPL", "MSFT"])
    state.apply(trades(0, np.array([T0 + 1]), np.array([100.0]), np.array([10.0])))
    assert state.snapshot("MSFT") is None
    assert state.ticks == 0


def test_new_session_resets_vwap_and_session_volume():
    day = 86_400 * 1_000_000_000
    ts = np.array([T0, T0 + 61 * 10**9, T0 + day, T0 + day + 61 * 10**9])
    price = np.array([10.0, 20.0, 30.0, 31.0])
    state = MarketState(["SPY"], ["SPY"])
    state.apply(trades(0, ts, price, np.array([1.0, 1.0, 5.0, 2.0])))
    bars = state.bars("SPY", 10)
    assert bars[-1].model_extra["vwap"] == pytest.approx(30.0)  # first bar of the new day
    snap = state.snapshot("SPY")
    assert snap.volume == 7.0
    assert snap.previous_close == 20.0
    assert snap.open == 30.0


def _bar_batch(ts, close):
    n = len(ts)
    return BarBatch.from_columns(symbol_id=np.zeros(n), ts_ns=ts, open=close, high=close + 0.5,
                                 low=close - 0.5, close=close, volume=np.full(n, 100.0))


def test_warmup_bars_seed_indicators_and_live_ticks_continue():
    close = 100 + np.cumsum(np.random.default_rng(2).normal(0, 0.3, 60))
    ts = T0 + np.arange(60) * NS_PER_MINUTE
    state = MarketState(["QQQ"], ["QQQ"])
    assert state.load_bars(_bar_batch(ts, close)) == 60
    state.apply(trades(0, np.array([ts[-1] + 2 * NS_PER_MINUTE]), np.array([close[-1]]),
                       np.array([1.0])))
    bars = state.bars("QQQ", 100)
    assert len(bars) == 60
    sma = np.array([b.model_extra["sma_20"] for b in bars], dtype=float)
    np.testing.assert_allclose(sma, talib.SMA(close, 20), rtol=1e-9, equal_nan=True)


def test_backfill_into_a_gap_rebuilds_indicators_in_time_order():
    close = 50 + np.cumsum(np.random.default_rng(4).normal(0, 0.2, 80))
    ts = T0 + np.arange(80) * NS_PER_MINUTE
    gap = np.r_[0:30, 45:80]
    state = MarketState(["AMZN"], ["AMZN"])
    state.load_bars(_bar_batch(ts[gap], close[gap]))
    state.load_bars(_bar_batch(ts[30:45], close[30:45]))  # the missed bars arrive later
    bars = state.bars("AMZN", 200)
    assert [int(b.timestamp.timestamp()) for b in bars] == [int(t // 10**9) for t in ts]
    ema = np.array([b.model_extra["ema_20"] for b in bars], dtype=float)
    np.testing.assert_allclose(ema, talib.EMA(close, 20), rtol=1e-9, equal_nan=True)


def test_bulk_load_beyond_ring_capacity_keeps_newest_bars_with_full_history_indicators():
    close = 80 + np.cumsum(np.random.default_rng(9).normal(0, 0.2, 120))
    ts = T0 + np.arange(120) * NS_PER_MINUTE
    state = MarketState(["TSLA"], ["TSLA"], bar_capacity=50)
    state.load_bars(_bar_batch(ts, close))
    bars = state.bars("TSLA", 500)
    assert [int(b.timestamp.timestamp()) for b in bars] == [int(x // 10**9) for x in ts[-50:]]
    ema = np.array([b.model_extra["ema_20"] for b in bars], dtype=float)
    np.testing.assert_allclose(ema, talib.EMA(close, 20)[-50:], rtol=1e-9)


def test_multi_day_warmup_seeds_session_figures_from_the_last_day():
    day = 86_400 * 1_000_000_000
    ts = np.r_[T0 + np.arange(3) * NS_PER_MINUTE, T0 + day + np.arange(2) * NS_PER_MINUTE]
    close = np.array([10.0, 11.0, 12.0, 20.0, 21.0])
    batch = BarBatch.from_columns(symbol_id=np.zeros(5), ts_ns=ts, open=close - 0.1,
                                  high=close + 1, low=close - 1, close=close,
                                  volume=np.array([1.0, 2, 3, 4, 5]))
    state = MarketState(["SPY", "QQQ"], ["QQQ", "SPY"])  # universe order differs from slots
    state.load_bars(BarBatch.from_columns(**{**batch.to_dict(), "symbol_id": np.ones(5)}))
    snap = state.snapshot("SPY")
    assert (snap.price, snap.previous_close, snap.open, snap.volume) == (21.0, 12.0, 19.9, 9.0)
    assert (snap.high, snap.low) == (22.0, 19.0)
    assert snap.indicators["vwap"] == pytest.approx(((21 + 19 + 20) / 3 * 4 + 21 * 5) / 9)


def test_vendor_bar_for_the_minute_just_closed_replaces_it_in_place(monkeypatch):
    # Arrange: 60 warm-up bars, then trades build minute m and the first trade of m+1 closes it
    rng = np.random.default_rng(21)
    close = 100 + np.cumsum(rng.normal(0, 0.3, 60))
    ts = T0 + np.arange(60) * NS_PER_MINUTE
    state = MarketState(["IBM"], ["IBM"])
    state.load_bars(_bar_batch(ts, close))
    m = ts[-1] + NS_PER_MINUTE
    state.apply(trades(0, m + np.array([1, 20, 40]) * 10**9, np.array([101.0, 103.0, 99.0]),
                       np.array([10.0, 10.0, 10.0])))
    state.apply(trades(0, np.array([m + NS_PER_MINUTE + 10**9]), np.array([100.7]),
                       np.array([5.0])))
    monkeypatch.setattr(state, "_rebuild", lambda *a: pytest.fail("took the rebuild path"))
    # Act: the vendor's bar for m, then its correction
    for vendor_close in (100.2, 100.4):
        vendor = BarBatch.from_columns(symbol_id=[0], ts_ns=[m], open=[101.0], high=[103.5],
                                       low=[98.5], close=[vendor_close], volume=[9_000.0])
        assert state.load_bars(vendor) == 1
    # Assert: every closed bar, and the live values, as TA-Lib computes them over the series
    bars = state.bars("IBM", 100)
    assert (bars[-1].high, bars[-1].low, bars[-1].close, bars[-1].volume) == (
        103.5, 98.5, 100.4, 9_000.0)
    closes, highs = np.r_[close, 100.4], np.r_[close + 0.5, 103.5]
    lows = np.r_[close - 0.5, 98.5]
    got = {name: np.array([b.model_extra[name] for b in bars], dtype=float)
           for name in ("sma_20", "rsi_14", "atr_14")}
    np.testing.assert_allclose(got["sma_20"], talib.SMA(closes, 20), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["rsi_14"], talib.RSI(closes, 14), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["atr_14"], talib.ATR(highs, lows, closes, 14), rtol=1e-9,
                               equal_nan=True)
    live = state.snapshot("IBM").indicators
    assert live["ema_20"] == pytest.approx(talib.EMA(np.r_[closes, 100.7], 20)[-1], rel=1e-9)


def test_vendor_bar_from_the_previous_session_rebuilds_the_series():
    # Arrange: the last bar of one day; the next day's first trade opened a new session
    close = 100 + np.cumsum(np.random.default_rng(22).normal(0, 0.3, 40))
    ts = T0 + np.arange(40) * NS_PER_MINUTE
    state = MarketState(["IBM"], ["IBM"])
    state.load_bars(_bar_batch(ts, close))
    next_day = ts[-1] + 86_400 * 10**9
    state.apply(trades(0, np.array([next_day]), np.array([close[-1]]), np.array([5.0])))
    vendor = BarBatch.from_columns(symbol_id=[0], ts_ns=[ts[-1]], open=[close[-1]],
                                   high=[close[-1] + 2.0], low=[close[-1] - 2.0],
                                   close=[close[-1] + 1.0], volume=[7_000.0])
    # Act
    state.load_bars(vendor)
    # Assert: the replaced bar is in, and the series still matches TA-Lib
    closes = np.r_[close[:-1], close[-1] + 1.0]
    bars = state.bars("IBM", 100)
    assert bars[-1].close == close[-1] + 1.0
    sma = np.array([b.model_extra["sma_20"] for b in bars], dtype=float)
    np.testing.assert_allclose(sma, talib.SMA(closes, 20), rtol=1e-9, equal_nan=True)
