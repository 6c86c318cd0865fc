"""FeedRouter: routing by owning shard, backpressure, re-seeding, history restore (no Ray)."""

import asyncio

import pytest

from market.feeds.base import NS_PER_MINUTE
from market.feeds.router import FeedRouter
from market.shard import Shard, ShardConfig
from market.sharding import shard_of
from tests.unit.market.feed_stubs import (
    NUM_SHARDS,
    T0,
    UNIVERSE,
    bars,
    batch,
    chain,
    make_stubs,
    option_quotes,
    owner,
    ticks,
)


async def test_route_sends_each_shard_only_the_rows_and_chains_it_owns():
    stubs = make_stubs()
    router = FeedRouter(UNIVERSE, stubs, wall_clock=lambda: 123.0)
    sent = batch(ticks([0, 1, 2, 3, 1], T0 + 1), option_quotes(0, T0 + 1), bars(2),
                 {"AAPL": chain("AAPL"), "SPY": chain("SPY")})
    await router.route(sent)
    await router.flush()

    assert stubs[2].calls == []  # owns nothing: never called
    got_ticks = 0
    for k, stub in enumerate(stubs[:2]):
        (t, o, b, chains, warmup), = stub.calls
        assert warmup is False
        assert all(owner(i) == k for i in t.symbol_id)
        assert all(owner(i) == k for i in o.symbol_id)
        assert all(owner(i) == k for i in b.symbol_id)
        assert sorted(chains or {}) == sorted(u for u in ("AAPL", "SPY") if shard_of(u, 3) == k)
        got_ticks += len(t)
    assert got_ticks == 5
    assert sum(len(s.calls[0][2]) for s in stubs[:2]) == len(sent.bars)
    assert router.counters == {"batches": 1, "ticks": 5, "option_ticks": 2, "bars": 8,
                               "shard_errors": 0, "reseeds": 0, "restored_bars": 0,
                               "replayed_ticks": 0, "replay_dropped_ticks": 0,
                               "journal_errors": 0, "resumes": 0}
    assert router.seconds_since_batch() == 0.0
    # What the shards applied: each holds its own symbols' last trade.
    for symbol in UNIVERSE:
        k = shard_of(symbol, NUM_SHARDS)
        assert stubs[k].shard.snapshot(symbol)["price"] == 100.0


async def test_route_waits_for_a_slow_shards_previous_call_and_keeps_one_in_flight():
    stubs = make_stubs()
    router = FeedRouter(UNIVERSE, stubs)
    slow = shard_of("AAPL", NUM_SHARDS)
    fast = 1 - slow
    stubs[slow].gate = asyncio.Event()
    await router.route(batch(ticks([0, 1], T0 + 1)))  # sends both, waits for neither

    second = asyncio.ensure_future(router.route(batch(ticks([0, 1], T0 + 2))))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done()  # blocked on the slow shard's first call
    assert len(stubs[slow].calls) == 1
    stubs[slow].gate.set()
    await second
    await router.flush()
    assert len(stubs[slow].calls) == len(stubs[fast].calls) == 2
    assert stubs[slow].max_in_flight == 1
    assert router.pending == {}


async def test_settle_of_a_restarted_shard_reseeds_warmup_chains_then_restores_history(tmp_path):
    stubs = make_stubs(lambda k: ShardConfig(history_dir=tmp_path / f"h{k}", bar_capacity=64))
    started = T0 + 3 * NS_PER_MINUTE + 17  # the feed started inside minute 3
    router = FeedRouter(UNIVERSE, stubs, started_ns=started)
    warm = batch(b=bars(3), chains={"AAPL": chain("AAPL")})
    await router.warm_up(warm)
    k = shard_of("AAPL", NUM_SHARDS)
    assert [c[4] for c in stubs[k].calls] == [True]
    # Streamed bars after the warm-up reach the history store.
    await router.forward(batch(b=bars(4, T0 + 3 * NS_PER_MINUTE)))
    await router.flush()
    stubs[k].shard.flush_history()
    assert router.counters["reseeds"] == 0

    # Ray restarts the shard: a fresh Shard with a new incarnation, same history dir.
    old = stubs[k].shard
    stubs[k].shard = Shard(old.market.symbols, UNIVERSE, old.config)
    await router.forward(batch(ticks([0], T0 + 7 * NS_PER_MINUTE + 1)))
    await router.flush()

    assert router.counters["reseeds"] == 1
    reseed = stubs[k].calls[-1]
    assert reseed[0] is None
    assert reseed[1] is None
    assert reseed[4] is True
    assert all(owner(i) == k for i in reseed[2].symbol_id)
    assert len(reseed[2]) == 3 * len(old.market.symbols)  # its symbols' warm-up bars
    assert sorted(reseed[3]) == ["AAPL"]
    # From the run's first minute: streamed bars win over warm-up bars of the same minutes.
    assert stubs[k].restores == [started // NS_PER_MINUTE * NS_PER_MINUTE]
    # The restarted shard holds the warm-up and the streamed minutes again.
    restored = stubs[k].shard.bars("AAPL", 50)
    assert len(restored) == 7
    assert restored == old.bars("AAPL", 50)
    assert router.counters["restored_bars"] == 4 * len(old.market.symbols)
    other = 1 - k
    assert router.incarnations[other] == stubs[other].shard.incarnation
    assert all(not c[4] for c in stubs[other].calls[1:])  # the other shard was not re-seeded


async def test_restore_failure_is_logged_and_the_feed_goes_on(caplog):
    stubs = make_stubs()
    router = FeedRouter(UNIVERSE, stubs)
    await router.warm_up(batch(b=bars(2)))
    k = shard_of("MSFT", NUM_SHARDS)
    stubs[k].shard = Shard(stubs[k].shard.market.symbols, UNIVERSE)
    stubs[k].restore_error = OSError("unreadable parquet")
    await router.forward(batch(ticks([1], T0 + 5 * NS_PER_MINUTE)))
    await router.flush()
    assert router.counters["reseeds"] == 1
    assert router.counters["restored_bars"] == 0
    assert "could not restore its history" in caplog.text


async def test_transport_error_is_counted_and_the_batch_dropped():
    stubs = make_stubs()
    router = FeedRouter(UNIVERSE, stubs, call_errors=(ConnectionError,))
    k = shard_of("AAPL", NUM_SHARDS)
    stubs[k].fail_with = ConnectionError("actor died")
    await router.route(batch(ticks([0, 1], T0 + 1)))
    await router.route(batch(ticks([0, 1], T0 + 2)))  # settles the failed call first
    await router.flush()
    assert router.counters["shard_errors"] == 2
    assert router.counters["batches"] == 2
    assert stubs[1 - k].shard.snapshot(UNIVERSE[1])["price"] == 100.0


async def test_error_outside_call_errors_propagates():
    stubs = make_stubs()
    router = FeedRouter(UNIVERSE, stubs, call_errors=(ConnectionError,))
    stubs[shard_of("AAPL", NUM_SHARDS)].fail_with = ValueError("bug in the shard")
    await router.route(batch(ticks([0], T0 + 1)))
    with pytest.raises(ValueError, match="bug in the shard"):
        await router.flush()
    assert router.counters["shard_errors"] == 0
