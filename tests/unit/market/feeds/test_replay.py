"""market.feeds.replay: a recording replays as the same batches, grouped the same way,
at any speed.

Recordings are written to and replayed from a plain path, a ``file://`` URI and pyarrow's
in-memory filesystem (an object store).
"""

from __future__ import annotations

import time

import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from market.feeds.recorder import TickRecorder
from market.feeds.replay import ReplayFeed
from tests.unit.market.feeds.feed_batches import SYMBOLS, assert_same_batch, record, warmup_batch


@pytest.fixture(params=["path", "file_uri", "memory"])
def recording(request, tmp_path):
    root = {"path": tmp_path, "file_uri": f"file://{tmp_path}",
            "memory": Storage("bucket/recordings", filesystem=pafs._MockFileSystem())}
    return record(root[request.param])


async def test_replay_as_fast_as_possible_yields_identical_batches(recording):
    root, batches = recording
    feed = ReplayFeed(root, speed=0, symbols=SYMBOLS)

    warm = await feed.warmup()
    replayed = [b async for b in feed.stream()]

    assert feed.symbols == SYMBOLS
    assert_same_batch(warm, warmup_batch())
    assert len(replayed) == len(batches)
    for original, again in zip(batches, replayed, strict=True):
        assert_same_batch(original, again)
    assert feed.status().messages == sum(
        len(b.ticks) + len(b.option_ticks) + len(b.bars) for b in batches)


async def test_replay_at_10x_takes_a_tenth_of_event_time(recording):
    root, batches = recording
    feed = ReplayFeed(root, speed=10, symbols=SYMBOLS)
    span_s = (batches[-1].ticks.ts_ns.max() - batches[0].ticks.ts_ns.max()) / 1e9

    start = time.monotonic()
    count = sum([1 async for _ in feed.stream()])
    elapsed = time.monotonic() - start

    assert count == len(batches)
    assert span_s / 10 * 0.9 <= elapsed <= span_s / 10 + 0.5


async def test_replay_skips_a_truncated_file_and_counts_it(recording):
    root, _ = recording
    storage = root if isinstance(root, Storage) else Storage(root)
    session = storage.listdir()[0]
    storage.write_bytes(f"{session}/ticks/part-999999.parquet", b"PAR1 not really")

    feed = ReplayFeed(root, speed=0, symbols=SYMBOLS)

    assert feed.status().dropped == 1
    assert feed.total_batches == 40


async def test_record_then_replay_gives_identical_indicator_values(tmp_path):
    from market.feeds.sim import SimulatedFeed
    from market.shard import Shard

    symbols = ("AAPL", "MSFT", "SPY")
    start_ns = 1_795_500_000 * 1_000_000_000  # a weekday afternoon, UTC
    sim = SimulatedFeed(symbols, rate=400, option_rate=100, interval_ms=1_000,
                        clock=lambda: start_ns)
    live = Shard(symbols, symbols)
    recorder = TickRecorder(tmp_path, row_group_rows=10_000)
    warm = await sim.warmup()
    live.ingest(warm.ticks, warm.option_ticks, warm.bars, warm.chains)
    recorder.write(warm, symbols, warmup=True)
    for i in range(1, 8 * 60):  # eight simulated minutes, one batch a second
        batch = sim.next_batch(start_ns + i * 1_000_000_000)
        live.ingest(batch.ticks, batch.option_ticks, batch.bars, batch.chains)
        recorder.write(batch, symbols)
    recorder.close()

    replay = ReplayFeed(tmp_path, speed=0, symbols=symbols)
    again = Shard(replay.symbols, replay.symbols)
    warm2 = await replay.warmup()
    again.ingest(warm2.ticks, warm2.option_ticks, warm2.bars, warm2.chains)
    async for batch in replay.stream():
        again.ingest(batch.ticks, batch.option_ticks, batch.bars, batch.chains)

    for symbol in symbols:
        original = live.bars(symbol, 500)
        replayed = again.bars(symbol, 500)
        assert len(original) > 400
        assert original[-1]["rsi_14"] is not None
        assert original[-1]["macd_signal"] is not None
        assert original == replayed
        assert live.snapshot(symbol) == again.snapshot(symbol)


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file_uri"])
async def test_replay_from_settings_holds_open_after_the_last_batch(tmp_path, as_uri):
    import asyncio

    from core.settings import Settings
    from market.feeds import make_feed

    root, batches = record(f"file://{tmp_path}" if as_uri else tmp_path)
    feed = make_feed(Settings(feed="replay", replay_dir=root, replay_speed=0,
                              symbols="AAPL,MSFT"))
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for _ in feed.stream():
            seen += 1

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    assert not task.done()
    assert seen == len(batches)
    assert feed.status().detail["finished"] is True
    await feed.close()
    await asyncio.wait_for(task, 2)
