"""Shard: option chains priced, implied and filtered; checked against vollib."""

import numpy as np
import orjson
import pytest
from vollib.black_scholes_merton import black_scholes_merton
from vollib.black_scholes_merton.greeks import analytical as vollib_greeks
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from core.errors import InvalidInput, NotFound
from core.models import OptionsChain
from market.feeds.base import (
    NS_PER_MINUTE,
    QUOTE,
    TRADE,
    BarBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
    occ_symbol,
)
from market.greeks import time_to_expiry
from market.shard import ChainFilter, Shard, ShardConfig

NOW = 1_764_000_000 * 1_000_000_000
SPOT, RATE, DIV = 200.0, 0.04, 0.01
EXPIRIES = np.array(["2025-12-19", "2026-03-20"], dtype="datetime64[D]")
STRIKES = np.array([160.0, 190.0, 200.0, 210.0, 240.0])


def contracts():
    exp, strike, call = np.meshgrid(EXPIRIES, STRIKES, [True, False], indexing="ij")
    exp, strike, call = exp.ravel(), strike.ravel(), call.ravel()
    occ = [occ_symbol("AAPL", e, c, k) for e, c, k in zip(exp, call, strike, strict=True)]
    return OptionContracts("AAPL", occ, exp, strike, call,
                           np.arange(len(occ), dtype=np.int64) * 10)


def sigma_of(strike, t):
    return 0.25 + 0.3 * (np.log(strike / SPOT)) ** 2 + 0.02 * t - 0.1 * np.log(strike / SPOT)


def model_prices(c):
    t = time_to_expiry(c.expiration, NOW)
    return np.array([black_scholes_merton("c" if cl else "p", SPOT, k, tt, RATE,
                                          sigma_of(k, tt), DIV)
                     for cl, k, tt in zip(c.is_call, c.strike, t, strict=True)]), t


@pytest.fixture
def shard():
    s = Shard(["AAPL", "MSFT"], ["AAPL", "MSFT"], ShardConfig(rate=RATE, dividend_yield=DIV))
    c = contracts()
    price, _ = model_prices(c)
    n = len(c)
    ticks = TickBatch.from_columns(kind=[TRADE], symbol_id=[0], ts_ns=[NOW], price=[SPOT],
                                   size=[100.0], bid=[np.nan], ask=[np.nan],
                                   bid_size=[np.nan], ask_size=[np.nan])
    quotes = OptionTickBatch.from_columns(
        kind=np.full(n, QUOTE), symbol_id=np.zeros(n), contract_index=np.arange(n),
        ts_ns=np.full(n, NOW), price=np.full(n, np.nan), size=np.full(n, np.nan),
        bid=price * 0.99, ask=price * 1.01, bid_size=np.ones(n), ask_size=np.ones(n))
    s.ingest(ticks, quotes, None, {"AAPL": c})
    return s


def test_chain_implied_vol_and_greeks_match_vollib(shard):
    chain = OptionsChain.model_validate(orjson.loads(shard.chain_json("AAPL")))
    c = contracts()
    _, t = model_prices(c)
    assert chain.underlying_price == SPOT
    assert len(chain.contracts) == len(c)
    for option, k, tt in zip(chain.contracts, c.strike, t, strict=True):
        flag = "c" if option.type == "call" else "p"
        expected_iv = vollib_iv(option.price, SPOT, k, tt, RATE, DIV, flag)
        assert option.implied_volatility == pytest.approx(expected_iv, abs=1e-8)
        assert option.implied_volatility == pytest.approx(sigma_of(k, tt), abs=1e-8)
        for name in ("delta", "gamma", "theta", "vega", "rho"):
            ref = getattr(vollib_greeks, name)(flag, SPOT, k, tt, RATE, expected_iv, DIV)
            assert getattr(option.greeks, name) == pytest.approx(ref, rel=1e-7, abs=1e-10)


def test_price_is_mid_with_two_sided_quote_else_last_trade(shard):
    n = len(contracts())
    ticks = OptionTickBatch.from_columns(
        kind=[QUOTE, TRADE], symbol_id=[0, 0], contract_index=[0, 0],
        ts_ns=[NOW + 1, NOW + 2], price=[np.nan, 41.5], size=[np.nan, 3.0], bid=[0.0, np.nan],
        ask=[42.0, np.nan], bid_size=[0.0, np.nan], ask_size=[1.0, np.nan])
    shard.ingest(None, ticks, None, None)
    first = orjson.loads(shard.chain_json("AAPL"))["contracts"][0]
    assert first["price"] == 41.5
    assert first["last"] == 41.5
    assert first["volume"] == 3
    assert n > 1


def test_price_below_intrinsic_has_null_iv_and_greeks(shard):
    c = contracts()
    deep_itm_call = int(np.flatnonzero(c.is_call & (c.strike == 160.0))[0])
    ticks = OptionTickBatch.from_columns(
        kind=[QUOTE], symbol_id=[0], contract_index=[deep_itm_call], ts_ns=[NOW + 5],
        price=[np.nan], size=[np.nan], bid=[10.0], ask=[10.2], bid_size=[1.0], ask_size=[1.0])
    shard.ingest(None, ticks, None, None)
    row = orjson.loads(shard.chain_json("AAPL"))["contracts"][deep_itm_call]
    assert row["implied_volatility"] is None
    assert row["greeks"] is None


def test_filters_select_type_expiration_and_strike_range(shard):
    flt = ChainFilter(expiration=EXPIRIES[1].astype(object), type="put", min_strike=190,
                      max_strike=210)
    rows = orjson.loads(shard.chain_json("AAPL", flt))["contracts"]
    assert {(r["type"], r["expiration"]) for r in rows} == {("put", "2026-03-20")}
    assert sorted(r["strike"] for r in rows) == [190.0, 200.0, 210.0]


def test_inverted_strike_filter_is_invalid_input():
    with pytest.raises(InvalidInput):
        ChainFilter(min_strike=300, max_strike=100)


def test_unknown_symbol_and_missing_chain_are_not_found(shard):
    with pytest.raises(NotFound):
        shard.chain_json("TSLA")
    with pytest.raises(NotFound):
        shard.chain_json("MSFT")


def test_new_open_interest_keeps_quotes_and_tracks_change(shard):
    c = contracts()
    before = orjson.loads(shard.chain_json("AAPL"))["contracts"]
    c.open_interest = c.open_interest + 7
    shard.ingest(None, None, None, {"AAPL": c})
    arrays = shard.chain_arrays("AAPL")
    after = orjson.loads(shard.chain_json("AAPL"))["contracts"]
    assert [r["bid"] for r in after] == [r["bid"] for r in before]
    np.testing.assert_array_equal(arrays["open_interest"] - arrays["previous_open_interest"], 7)


def test_underlying_move_refreshes_greeks(shard):
    before = orjson.loads(shard.chain_json("AAPL"))["contracts"][4]["greeks"]["delta"]
    ticks = TickBatch.from_columns(kind=[TRADE], symbol_id=[0], ts_ns=[NOW + NS_PER_MINUTE],
                                   price=[SPOT * 1.01], size=[1.0], bid=[np.nan],
                                   ask=[np.nan], bid_size=[np.nan], ask_size=[np.nan])
    shard.ingest(ticks, None, None, None)
    chain = orjson.loads(shard.chain_json("AAPL"))
    assert chain["underlying_price"] == pytest.approx(SPOT * 1.01)
    assert chain["contracts"][4]["greeks"]["delta"] != before


def _trade(ts_ns, price, size=100.0):
    return TickBatch.from_columns(kind=[TRADE], symbol_id=[1], ts_ns=[ts_ns], price=[price],
                                  size=[size], bid=[np.nan], ask=[np.nan],
                                  bid_size=[np.nan], ask_size=[np.nan])


def test_vendor_bar_arriving_with_next_minutes_trade_replaces_the_bar_built_from_trades():
    # Arrange: MSFT trades in minute m; the vendor's bar for m (whole-market volume, its own
    # close) comes in the same batch as the first trade of m+1, as Alpaca's stream sends it.
    shard = Shard(["MSFT"], ["AAPL", "MSFT"], ShardConfig())
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    shard.ingest(_trade(minute + 1_000_000_000, 400.0))
    shard.ingest(_trade(minute + 30_000_000_000, 401.0))
    vendor = BarBatch.from_columns(symbol_id=[1], ts_ns=[minute], open=[400.0], high=[402.5],
                                   low=[399.5], close=[401.25], volume=[12_345.0])
    # Act
    shard.ingest(_trade(minute + NS_PER_MINUTE + 1_000_000, 401.5), bars=vendor)
    # Assert: the closed minute is the vendor's bar, not the two trades' OHLCV
    bar = shard.bars("MSFT", 1)[-1]
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (
        400.0, 402.5, 399.5, 401.25, 12_345.0)


def _vendor_bar(minute, close, volume, open_=400.0, high=402.5, low=399.5):
    return BarBatch.from_columns(symbol_id=[1], ts_ns=[minute], open=[open_], high=[high],
                                 low=[low], close=[close], volume=[volume])


def _ohlcv(bar):
    return bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]


def test_vendor_bar_arriving_before_the_next_minutes_trade_waits_for_the_minute_to_close():
    # Arrange: minute m traded; the vendor's bar for m arrives while m is still forming
    # (no trade of m+1 yet), then a correction of it
    shard = Shard(["MSFT"], ["AAPL", "MSFT"], ShardConfig())
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    shard.ingest(_trade(minute + 1_000_000_000, 400.0))
    shard.ingest(_trade(minute + 30_000_000_000, 401.0))
    shard.ingest(bars=_vendor_bar(minute, 401.0, 12_000.0))
    shard.ingest(bars=_vendor_bar(minute, 401.25, 12_345.0))
    waiting = shard.stats()["bars_waiting"]
    # Act: the first trade of m+1 closes m
    shard.ingest(_trade(minute + NS_PER_MINUTE + 1_000_000, 401.5))
    # Assert: the closed minute is the vendor's corrected bar; nothing is left waiting
    assert waiting == 1
    assert _ohlcv(shard.bars("MSFT", 1)[-1]) == (400.0, 402.5, 399.5, 401.25, 12_345.0)
    assert shard.stats()["bars_waiting"] == 0


def test_streamed_vendor_bars_and_backfills_replace_trade_bars_in_the_history_store(tmp_path):
    # Arrange: a shard that persists closed bars; minutes m and m+1 built from trades
    from market.history import HistoryStore

    shard = Shard(["MSFT"], ["AAPL", "MSFT"], ShardConfig(history_dir=tmp_path))
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    for k, price in enumerate((400.0, 401.0, 402.0)):
        shard.ingest(_trade(minute + k * NS_PER_MINUTE + 1_000_000, price))
    # Act: the vendor's bar for m+1 (live) and a backfill of m, then a flush
    shard.ingest(bars=_vendor_bar(minute + NS_PER_MINUTE, 401.1, 9_000.0))
    shard.ingest(bars=_vendor_bar(minute, 400.2, 7_000.0, open_=399.0))
    shard.flush_history()
    # Assert: the stored bars are the vendor's, in time order, one per minute
    stored = HistoryStore(tmp_path).read_bars("MSFT")
    assert stored.ts_ns.tolist() == [minute, minute + NS_PER_MINUTE]
    assert stored.close.tolist() == [400.2, 401.1]
    assert stored.volume.tolist() == [7_000.0, 9_000.0]
    assert [b["close"] for b in shard.bars("MSFT", 2)] == [400.2, 401.1]


def test_warmup_bars_are_loaded_but_not_written_to_the_history_store(tmp_path):
    # Arrange: start-up history for MSFT (it is history already, or simulated)
    from market.history import HistoryStore

    shard = Shard(["MSFT"], ["AAPL", "MSFT"], ShardConfig(history_dir=tmp_path))
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    warm = BarBatch.from_columns(
        symbol_id=[1, 1], ts_ns=[minute - 2 * NS_PER_MINUTE, minute - NS_PER_MINUTE],
        open=[399.0, 400.0], high=[401.0, 401.0], low=[398.0, 399.0], close=[400.0, 400.5],
        volume=[1_000.0, 1_100.0])
    # Act
    shard.ingest(bars=warm, warmup=True)
    shard.flush_history()
    # Assert
    assert [b["close"] for b in shard.bars("MSFT", 2)] == [400.0, 400.5]
    assert len(HistoryStore(tmp_path).read_bars("MSFT")) == 0


def test_waiting_bars_of_a_symbol_that_stopped_trading_are_bounded_and_counted():
    # Arrange: MSFT trades once; then the vendor streams bars for many later minutes
    from market.shard import MAX_WAITING_BARS_PER_SYMBOL

    shard = Shard(["MSFT"], ["AAPL", "MSFT"], ShardConfig())
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    shard.ingest(_trade(minute + 1_000_000, 400.0))
    extra = 3
    # Act
    for k in range(MAX_WAITING_BARS_PER_SYMBOL + extra):
        shard.ingest(bars=_vendor_bar(minute + k * NS_PER_MINUTE, 400.0 + k, 100.0))
    shard.ingest(_trade(minute + 30 * NS_PER_MINUTE, 410.0))
    # Assert: the newest bars were kept and loaded once trading resumed
    stats = shard.stats()
    assert stats["bars_dropped"] == extra
    assert stats["bars_waiting"] == 0
    closes = [b["close"] for b in shard.bars("MSFT", MAX_WAITING_BARS_PER_SYMBOL + 1)]
    assert closes[-MAX_WAITING_BARS_PER_SYMBOL:] == [
        400.0 + k for k in range(extra, MAX_WAITING_BARS_PER_SYMBOL + extra)]


def test_warmup_batch_with_history_and_a_current_tick_serves_a_snapshot_with_indicators():
    # Arrange: the simulator's warm-up: past sessions' bars plus a tick at the current time
    import asyncio

    from market.feeds.sim import SimulatedFeed

    feed = SimulatedFeed(("AAPL", "MSFT"), seed=3, rate=100.0, option_rate=10.0)
    warm = asyncio.run(feed.warmup())
    shard = Shard(["AAPL", "MSFT"], ["AAPL", "MSFT"], ShardConfig())
    # Act
    shard.ingest(warm.ticks, warm.option_ticks, warm.bars, warm.chains)
    # Assert: history went in before the tick, so the bars and the forming minute both hold
    snapshot = shard.snapshot("AAPL")
    assert snapshot["price"] > 0
    assert snapshot["indicators"]["sma_20"] is not None
    assert len(shard.bars("AAPL", 50)) == 50


def _trades(shard, symbol_ids, ts, price):
    n = len(symbol_ids)
    shard.ingest(TickBatch.from_columns(
        kind=[TRADE] * n, symbol_id=symbol_ids, ts_ns=[ts] * n, price=[price] * n,
        size=[100.0] * n, bid=[np.nan] * n, ask=[np.nan] * n, bid_size=[np.nan] * n,
        ask_size=[np.nan] * n), None, None, None)


def test_market_changes_names_every_change_but_fetches_within_the_limit():
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA"]
    shard = Shard(symbols, symbols, ShardConfig())
    _trades(shard, [0, 1, 2, 3], NOW, 100.0)
    since, _, _ = shard.market_changes(0, symbols)
    _trades(shard, [1, 2, 3], NOW + 1_000_000, 101.0)  # AAPL unchanged after `since`

    sequence, changed, every = shard.market_changes(since, symbols)
    _, named, limited = shard.market_changes(since, symbols, first=["AAPL", "XXXX"], limit=2)

    assert sequence > since
    assert shard.sequence == sequence
    assert changed == named == ["MSFT", "NVDA", "TSLA"]
    assert sorted(every) == ["MSFT", "NVDA", "TSLA"]
    assert list(limited) == ["AAPL", "MSFT"]  # the caller's waiting symbol first, then changes
    assert limited["MSFT"]["price"] == 101.0
    assert limited["AAPL"]["price"] == 100.0
    assert shard.market_changes(since, symbols, limit=0)[2] == {}


def test_a_restarted_shard_restores_the_bars_it_closed_since_the_warmup(tmp_path):
    # Arrange: a shard warmed up with 30 bars closes 5 more minutes from trades, flushes
    # them to its history store, and dies
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    closes = 400 + np.cumsum(np.random.default_rng(8).normal(0, 0.4, 30))
    warm = BarBatch.from_columns(
        symbol_id=np.ones(30), ts_ns=minute - np.arange(30, 0, -1) * NS_PER_MINUTE,
        open=closes, high=closes + 0.5, low=closes - 0.5, close=closes, volume=np.full(30, 1e3))
    config = ShardConfig(history_dir=tmp_path)
    before = Shard(["MSFT"], ["AAPL", "MSFT"], config)
    before.ingest(bars=warm, warmup=True)
    for k in range(6):
        before.ingest(_trade(minute + k * NS_PER_MINUTE + 1_000_000, 401.0 + k))
    before.flush_history()
    expected = before.bars("MSFT", 35)
    # Act: the new incarnation gets a live tick, the warm-up again, then its history
    after = Shard(["MSFT"], ["AAPL", "MSFT"], config)
    after.ingest(_trade(minute + 6 * NS_PER_MINUTE + 1_000_000, 407.0))
    after.ingest(bars=warm, warmup=True)
    restored = after.restore_history(minute)
    # Assert: the same 35 bars with the same indicator values, no gap
    assert restored == 5  # minutes 0-4; minute 5 was still forming when it died
    assert after.bars("MSFT", 35) == expected


def test_replay_applies_only_ticks_newer_than_the_symbols_newest_and_a_fence_refuses():
    # Arrange: a shard that applied two of four journaled MSFT trades of one minute, and a
    # reference that applied all four in their calls
    minute = NOW // NS_PER_MINUTE * NS_PER_MINUTE
    journal = TickBatch.concat([_trade(minute + k * 10**9, 400.0 + k, 100.0 + k)
                                for k in range(4)])
    survivor, reference = (Shard(["MSFT"], ["AAPL", "MSFT"]) for _ in range(2))
    survivor.ingest(journal.take(np.arange(2)))
    for k in range(4):
        reference.ingest(journal.take(np.array([k])))
    # Act: the whole journal is replayed, then a trade of the next minute closes the bar;
    # a batch fenced for another incarnation is refused
    applied = survivor.replay(journal, BarBatch.empty())
    refused = survivor.ingest(_trade(minute + 70 * 10**9, 500.0), expect="another")
    for shard in (survivor, reference):
        shard.ingest(_trade(minute + 61 * 10**9, 410.0), expect=shard.incarnation)
    # Assert: the two it lacked, once; the same closed bar and session volume
    assert applied == 2
    assert refused["refused"] is True
    assert survivor.bars("MSFT", 5) == reference.bars("MSFT", 5)
    bar = survivor.bars("MSFT", 5)[-1]
    assert (bar["open"], bar["high"], bar["close"], bar["volume"]) == (400.0, 403.0, 403.0, 406.0)
    assert survivor.snapshot("MSFT")["volume"] == reference.snapshot("MSFT")["volume"]
    assert survivor.stats()["ticks"] == reference.stats()["ticks"] == 5
