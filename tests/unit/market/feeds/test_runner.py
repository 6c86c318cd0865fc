"""FeedRunner: warm-up before streaming, recording, status, failure and stop (no Ray)."""

import asyncio

import pyarrow.parquet as pq

from market.feeds.base import NS_PER_MINUTE, QUOTE, FeedStatus, TickBatch
from market.feeds.journal import MemoryJournal
from market.feeds.recorder import TickRecorder
from market.feeds.router import FeedRouter
from market.feeds.runner import FeedRunner
from tests.unit.market.feed_stubs import T0, UNIVERSE, bars, batch, make_stubs, ticks


class ScriptedFeed:
    """A feed that warms up with ``warm`` and streams ``batches``, then fails or waits."""

    def __init__(self, warm, batches, fail_after=None):
        self.symbols = UNIVERSE
        self.warm = warm
        self.batches = batches
        self.fail_after = fail_after
        self.warmups = 0
        self.closed = False
        self.interest = None
        self.streamed = asyncio.Event()

    async def warmup(self):
        self.warmups += 1
        return self.warm

    async def stream(self):
        for b in self.batches:
            yield b
        self.streamed.set()
        if self.fail_after is not None:
            raise self.fail_after
        await asyncio.Event().wait()  # an idle market: nothing more, not closed

    def status(self):
        return FeedStatus("scripted", connected=True, last_message_ns=T0, messages=7, dropped=1)

    async def close(self):
        self.closed = True

    async def set_interest(self, symbols):
        self.interest = symbols


async def test_start_warms_every_shard_before_streaming_and_is_idempotent():
    stubs = make_stubs()
    feed = ScriptedFeed(batch(b=bars(3)), [batch(ticks([0, 1, 2, 3], T0 + 1))])
    runner = FeedRunner(feed, FeedRouter(UNIVERSE, stubs))
    first = await runner.start()
    assert first == {"symbols": 4, "warm_bars": 12}
    # start returned after the shards applied the warm-up, not only after it was sent.
    for stub in stubs[:2]:
        assert stub.calls[0][4] is True
        assert stub.in_flight == 0
        assert all(len(stub.shard.bars(s, 10)) == 3 for s in stub.shard.market.symbols)
    assert await runner.start() == first
    assert feed.warmups == 1
    await asyncio.wait_for(feed.streamed.wait(), 5)
    await runner.router.flush()
    status = runner.status()
    assert status["running"] is True
    assert status["batches"] == 2
    assert status["ticks"] == 4
    assert status["bars"] == 12
    assert status["name"] == "scripted"
    assert status["messages"] == 7
    assert status["dropped"] == 1
    assert status["error"] is None
    assert status["recorded"] is None
    assert status["seconds_since_batch"] >= 0
    await runner.stop()
    assert feed.closed
    await asyncio.sleep(0)
    assert runner.running is False


async def test_feed_failure_is_kept_for_health_and_stops_the_stream():
    feed = ScriptedFeed(batch(b=bars(1)), [], fail_after=ConnectionResetError("upstream gone"))
    runner = FeedRunner(feed, FeedRouter(UNIVERSE, make_stubs()))
    await runner.start()
    await asyncio.wait_for(feed.streamed.wait(), 5)
    for _ in range(5):
        await asyncio.sleep(0)
    status = runner.status()
    assert status["running"] is False
    assert status["error"] == "ConnectionResetError: upstream gone"


async def test_warmup_and_streamed_batches_are_recorded(tmp_path):
    feed = ScriptedFeed(batch(b=bars(2)), [batch(ticks([0, 3], T0 + 1))])
    recorder = TickRecorder(tmp_path, session="s")
    runner = FeedRunner(feed, FeedRouter(UNIVERSE, make_stubs()), recorder)
    await runner.start()
    await asyncio.wait_for(feed.streamed.wait(), 5)
    await runner.stop()  # finalises the Parquet files
    rows = runner.status()["recorded"]
    assert rows["ticks"] == 2
    assert rows["bars"] == 8
    recorded = pq.read_table(tmp_path / "s" / "ticks").to_pydict()
    assert sorted(recorded["symbol"]) == ["AAPL", "TSLA"]


async def test_set_interest_reaches_a_feed_that_takes_it():
    feed = ScriptedFeed(batch(), [])
    runner = FeedRunner(feed, FeedRouter(UNIVERSE, make_stubs()))
    await runner.set_interest(["MSFT", "SPY"])
    assert feed.interest == {"MSFT", "SPY"}


async def test_a_resumed_start_replays_the_journal_before_the_warmup_quotes_and_streaming():
    stubs = make_stubs()
    journal = MemoryJournal()
    lost = ticks([0, 1, 2, 3], T0 + NS_PER_MINUTE + 5, 101.0)  # journaled by the lost feed
    router = FeedRouter(UNIVERSE, stubs, started_ns=T0, journal=journal)
    journal.append({k: (t, b) for k in range(len(stubs)) for t, _, b in [router.parts(
        batch(lost), k)]})
    quotes = TickBatch.from_columns(kind=[QUOTE] * 4, symbol_id=[0, 1, 2, 3],
                                    ts_ns=[T0 + 2 * NS_PER_MINUTE] * 4, price=[float("nan")] * 4,
                                    size=[float("nan")] * 4, bid=[100.0] * 4, ask=[100.1] * 4,
                                    bid_size=[1.0] * 4, ask_size=[1.0] * 4)
    feed = ScriptedFeed(batch(t=quotes, b=bars(1)), [])
    runner = FeedRunner(feed, router)
    await runner.start(resume=True)
    # The journal's trades went in (the warm-up's newer quotes, sent first, would have
    # made the replay skip them as old), then the quotes.
    assert router.counters["resumes"] == 1
    assert router.counters["replayed_ticks"] == 4
    for stub in stubs[:2]:
        assert stub.shard.stats()["ticks"] == 2 * len(stub.shard.market.symbols)
        warm_calls = [c for c in stub.calls if c[4]]
        assert len(warm_calls[0][0]) == 0  # bars and chains first, the quotes after
        assert len(warm_calls[-1][0]) > 0
    await runner.stop()
