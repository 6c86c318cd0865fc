"""FeedRouter after failed calls: a lost shard's ticks are kept and replayed (no Ray).

Each scenario streams the same ticks through a router whose shard fails and through a
reference router whose shard never does; afterwards the two shards hold the same bars.
"""

import numpy as np

from market.feeds.base import NS_PER_MINUTE, NS_PER_SECOND
from market.feeds.router import FeedRouter
from market.shard import Shard, ShardConfig
from market.sharding import shard_of
from tests.unit.market.feed_stubs import NUM_SHARDS, T0, UNIVERSE, bars, batch, make_stubs, ticks

AAPL = UNIVERSE.index("AAPL")
K = shard_of("AAPL", NUM_SHARDS)


def at(minute: int, second: int) -> int:
    return T0 + minute * NS_PER_MINUTE + second * NS_PER_SECOND


async def _routers(tmp_path):
    made = []
    for name in ("lossy", "reference"):
        stubs = make_stubs(lambda k, n=name: ShardConfig(history_dir=tmp_path / n / f"h{k}",
                                                           bar_capacity=64))
        router = FeedRouter(UNIVERSE, stubs, started_ns=at(3, 0),
                            call_errors=(ConnectionError,))
        await router.warm_up(batch(b=bars(3)))
        made.append((router, stubs))
    return made


async def _send(routers, minute: int, second: int, price: float) -> None:
    for router, _ in routers:
        await router.forward(batch(ticks([AAPL, AAPL], at(minute, second), price)))


def _bars(stubs):
    return stubs[K].shard.bars("AAPL", 50)


async def test_restarted_shard_gets_history_and_kept_ticks_so_bars_match(tmp_path):
    routers = await _routers(tmp_path)
    (lossy, stubs), _ = routers
    await _send(routers, 3, 1, 101.0)
    await _send(routers, 4, 1, 102.0)  # closes minute 3: written to the history store
    await _send(routers, 4, 20, 103.0)
    await lossy.flush()  # acknowledged: the dead shard had applied everything up to 4:20
    stubs[K].fail_with = ConnectionError("node died")  # the shard dies inside minute 4
    await _send(routers, 4, 40, 104.0)
    await _send(routers, 5, 5, 105.0)
    await _send(routers, 5, 50, 106.0)
    assert K in lossy.down
    # Ray re-creates it: a fresh Shard with a new incarnation over the same history dir.
    old = stubs[K].shard
    stubs[K].shard = Shard(old.market.symbols, UNIVERSE, old.config)
    stubs[K].fail_with = None
    await _send(routers, 6, 2, 107.0)  # probe, re-seed, restore, replay
    for router, _ in routers:
        await router.flush()

    assert lossy.counters["reseeds"] == 1
    assert lossy.counters["restored_bars"] >= 1  # minute 3, from the history store
    replayed = lossy.counters["replayed_ticks"]
    assert replayed == 2 * 6  # 4:01 to 6:02: the minute forming at the loss, and on
    reference = _bars(routers[1][1])
    got = _bars(stubs)
    assert [b["timestamp"] for b in got] == [b["timestamp"] for b in reference]
    assert got == reference
    assert len(got) == 6  # 3 warm-up minutes, then 3, 4 and 5
    assert np.isclose(got[-1]["close"], 106.0)


async def test_same_incarnation_after_failure_gets_only_the_failed_calls(tmp_path):
    routers = await _routers(tmp_path)
    (lossy, stubs), _ = routers
    await _send(routers, 3, 1, 101.0)
    await _send(routers, 3, 30, 102.0)
    await lossy.flush()
    stubs[K].fail_with = ConnectionError("connection reset")
    await _send(routers, 3, 50, 103.0)
    await _send(routers, 4, 10, 104.0)  # settles the failed call: the shard is down
    stubs[K].fail_with = None
    await _send(routers, 4, 30, 105.0)  # the probe answers as the same incarnation
    await _send(routers, 5, 1, 106.0)
    for router, _ in routers:
        await router.flush()

    assert lossy.counters["reseeds"] == 0
    assert lossy.counters["replayed_ticks"] == 2 * 3  # 3:50, 4:10 and 4:30, once each
    assert _bars(stubs) == _bars(routers[1][1])
    assert stubs[K].shard.stats()["ticks"] == routers[1][1][K].shard.stats()["ticks"]


async def test_kept_ticks_stay_bounded_to_the_acknowledged_minute(tmp_path):
    routers = await _routers(tmp_path)
    lossy, _ = routers[0]
    for minute in range(3, 9):
        await _send(routers, minute, 10, 100.0 + minute)
        await _send(routers, minute, 40, 100.5 + minute)
    await lossy.flush()
    kept = lossy.journal.entries[K]
    oldest = min(int(t.ts_ns.min()) for t, _ in kept if len(t))
    assert oldest >= at(8, 0) - NS_PER_MINUTE  # nothing older than the minute before


async def test_feed_lost_with_a_shard_resumes_every_shard_from_the_journal(tmp_path):
    # Arrange: AAPL's shard and the feed share a node; MSFT's shard is elsewhere
    msft = UNIVERSE.index("MSFT")
    other = shard_of("MSFT", NUM_SHARDS)
    assert other != K
    routers = await _routers(tmp_path)
    (lossy, stubs), (reference, reference_stubs) = routers

    async def both(minute, second, price):
        for router, _ in routers:
            await router.forward(batch(ticks([AAPL, msft], at(minute, second), price)))

    await both(3, 1, 101.0)
    await both(4, 1, 102.0)  # closes minute 3 in both shards' history stores
    await both(4, 20, 103.0)
    for router, _ in routers:
        await router.flush()
    # The feed journals its next batch and dies before sending it; the node takes the
    # AAPL shard with it (Ray re-creates it empty over the same history dir).
    lost = batch(ticks([AAPL, msft], at(4, 40), 104.0))
    lossy.journal.append({k: (t, b) for k in range(NUM_SHARDS)
                          for t, _, b in [lossy.parts(lost, k)]})
    await reference.forward(lost)
    old = stubs[K].shard
    stubs[K].shard = Shard(old.market.symbols, UNIVERSE, old.config)

    # Act: Ray re-creates the feed with the run's start; it reads the surviving journal
    resumed = FeedRouter(UNIVERSE, stubs, started_ns=at(3, 0), call_errors=(ConnectionError,),
                         journal=lossy.journal)
    await resumed.warm_up(batch(b=bars(3)), resume=True)
    for router in (resumed, reference):
        await router.forward(batch(ticks([AAPL, msft], at(5, 5), 105.0)))
        await router.forward(batch(ticks([AAPL, msft], at(6, 2), 106.0)))
        await router.flush()

    # Assert: both shards hold the reference's bars; the lost batch applied once each
    assert resumed.counters["resumes"] == 1
    # Only the shard that restarted too restores its history (minute 3)
    assert stubs[K].restores == [at(3, 0)]
    assert stubs[other].restores == []
    assert resumed.counters["restored_bars"] == 1
    # AAPL's minute 4 whole (4:01, 4:20, 4:40) to the new shard; MSFT's lost 4:40 only
    assert resumed.counters["replayed_ticks"] == 3 + 1
    for k, symbol in ((K, "AAPL"), (other, "MSFT")):
        got, want = stubs[k].shard.bars(symbol, 50), reference_stubs[k].shard.bars(symbol, 50)
        assert [b["timestamp"] for b in got] == [b["timestamp"] for b in want]
        assert got == want
        assert len(got) == 6  # 3 warm-up minutes, then 3, 4 and 5
    assert stubs[K].shard.stats()["ticks"] == 3 + 2  # the replayed minute, then 5:05, 6:02


async def test_shard_restarted_between_calls_refuses_the_fenced_batch_and_is_replayed(tmp_path):
    routers = await _routers(tmp_path)
    (lossy, stubs), _ = routers
    await _send(routers, 3, 1, 101.0)
    await _send(routers, 4, 1, 102.0)
    await _send(routers, 4, 20, 103.0)
    for router, _ in routers:
        await router.flush()
    # Ray re-creates the shard while no call is in flight: the next call reaches the new
    # incarnation, which must not open minute 4 at 4:40 with the ticks of 4:01-4:20 gone.
    old = stubs[K].shard
    stubs[K].shard = Shard(old.market.symbols, UNIVERSE, old.config)
    await _send(routers, 4, 40, 104.0)
    await _send(routers, 5, 5, 105.0)
    for router, _ in routers:
        await router.flush()

    assert lossy.counters["reseeds"] == 1
    # 4:01 to 5:05: the refusal shows at 5:05's routing, which the replay then carries
    assert lossy.counters["replayed_ticks"] == 2 * 4
    assert _bars(stubs) == _bars(routers[1][1])
    # No tick twice: all the reference applied but 3:01 (minute 3 came from history)
    assert stubs[K].shard.stats()["ticks"] == routers[1][1][K].shard.stats()["ticks"] - 2
    assert _bars(stubs)[-1]["volume"] == 6 * 10.0  # minute 4 whole: three pairs of trades
