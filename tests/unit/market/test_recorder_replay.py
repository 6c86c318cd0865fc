"""Record → replay round trip: the same batches, grouped the same way, at any speed.

Recordings are written to and replayed from a plain path, a ``file://`` URI and pyarrow's
in-memory filesystem (an object store).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from market.feeds.base import (
    NS_PER_MINUTE,
    QUOTE,
    TRADE,
    BarBatch,
    FeedBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.feeds.recorder import TickRecorder
from market.feeds.replay import ReplayFeed

SYMBOLS = ("AAPL", "MSFT")
T0 = 1_767_000_000 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE


def _chain() -> OptionContracts:
    return OptionContracts(
        underlying="AAPL",
        contract=["AAPL261218C00200000", "AAPL261218P00200000"],
        expiration=np.array(["2026-12-18", "2026-12-18"], dtype="datetime64[D]"),
        strike=np.array([200.0, 200.0]), is_call=np.array([True, False]),
        open_interest=np.array([1200, 900], dtype=np.int64),
        vendor_implied_volatility=np.array([0.25, np.nan]),
        vendor_greeks={"delta": np.array([0.5, np.nan])},
    )


def _batches(n: int, rng: np.random.Generator) -> list[FeedBatch]:
    out = []
    for i in range(n):
        k = 50
        ts = T0 + i * 100_000_000 + np.arange(k) * 1_000_000
        kind = rng.integers(0, 2, k).astype(np.uint8)
        price = np.where(kind == TRADE, 100 + rng.standard_normal(k), np.nan)
        bid = np.where(kind == QUOTE, 99.9 + rng.standard_normal(k), np.nan)
        ticks = TickBatch.from_columns(
            kind=kind, symbol_id=rng.integers(0, 2, k), ts_ns=ts, price=price,
            size=np.where(kind == TRADE, 100.0, np.nan), bid=bid, ask=bid + 0.1,
            bid_size=np.where(kind == QUOTE, 5.0, np.nan),
            ask_size=np.where(kind == QUOTE, 7.0, np.nan))
        options = OptionTickBatch.from_columns(
            kind=np.zeros(3), symbol_id=np.zeros(3), contract_index=[0, 1, 0], ts_ns=ts[:3],
            price=[1.0, 2.0, 3.0], size=[1, 2, 3], bid=np.full(3, np.nan), ask=np.full(3, np.nan),
            bid_size=np.full(3, np.nan), ask_size=np.full(3, np.nan))
        bars = BarBatch.empty() if i % 10 else BarBatch.from_columns(
            symbol_id=[0, 1], ts_ns=[T0 + i * NS_PER_MINUTE] * 2, open=[1, 2], high=[2, 3],
            low=[0.5, 1.5], close=[1.5, 2.5], volume=[10, 20])
        out.append(FeedBatch(ticks, options, bars, {"AAPL": _chain()} if i == 5 else {}))
    return out


def _warmup() -> FeedBatch:
    bars = BarBatch.from_columns(
        symbol_id=[0, 1], ts_ns=[T0 - NS_PER_MINUTE] * 2, open=[1, 2], high=[2, 3],
        low=[0.5, 1.5], close=[1.5, 2.5], volume=[10, 20])
    return FeedBatch(TickBatch.empty(), OptionTickBatch.empty(), bars, {"AAPL": _chain()})


def _assert_same(a: FeedBatch, b: FeedBatch) -> None:
    for part in ("ticks", "option_ticks", "bars"):
        x, y = getattr(a, part), getattr(b, part)
        for name in x.dtypes:
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name),
                                          err_msg=f"{part}.{name}")
    assert set(a.chains) == set(b.chains)
    for key, chain in a.chains.items():
        other = b.chains[key]
        assert chain.contract == other.contract
        np.testing.assert_array_equal(chain.strike, other.strike)
        np.testing.assert_array_equal(chain.open_interest, other.open_interest)
        np.testing.assert_array_equal(chain.vendor_implied_volatility,
                                      other.vendor_implied_volatility)


def _record(root):
    rng = np.random.default_rng(3)
    batches = _batches(40, rng)
    recorder = TickRecorder(root, row_group_rows=500, rotate_rows=1_000)
    recorder.write(_warmup(), SYMBOLS, warmup=True)
    for batch in batches:
        recorder.write(batch, SYMBOLS)
    recorder.close()
    return root, batches


@pytest.fixture(params=["path", "file_uri", "memory"])
def recording(request, tmp_path):
    root = {"path": tmp_path, "file_uri": f"file://{tmp_path}",
            "memory": Storage("bucket/recordings", filesystem=pafs._MockFileSystem())}
    return _record(root[request.param])


async def test_replay_as_fast_as_possible_yields_identical_batches(recording):
    root, batches = recording
    feed = ReplayFeed(root, speed=0, symbols=SYMBOLS)

    warm = await feed.warmup()
    replayed = [b async for b in feed.stream()]

    assert feed.symbols == SYMBOLS
    _assert_same(warm, _warmup())
    assert len(replayed) == len(batches)
    for original, again in zip(batches, replayed, strict=True):
        _assert_same(original, again)
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


def test_recorder_writes_large_row_groups(tmp_path):
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    recorder = TickRecorder(tmp_path, row_group_rows=1_000, rotate_rows=10_000_000)
    for batch in _batches(100, rng):
        recorder.write(batch, SYMBOLS)
    recorder.close()

    files = list(tmp_path.rglob("ticks/*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata
    assert len(files) == 1
    assert meta.num_rows == 5_000
    assert all(meta.row_group(i).num_rows >= 1_000 for i in range(meta.num_row_groups))
    symbols = pq.read_table(files[0], columns=["symbol"])["symbol"].to_pylist()
    assert set(symbols) == set(SYMBOLS)


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

    root, batches = _record(f"file://{tmp_path}" if as_uri else tmp_path)
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


def test_recorder_from_settings_only_when_recording(tmp_path):
    from core.settings import Settings
    from market.feeds.recorder import recorder_from_settings

    assert recorder_from_settings(Settings(data_dir=tmp_path)) is None
    recorder = recorder_from_settings(Settings(data_dir=tmp_path, record=True))
    on_uri = recorder_from_settings(Settings(data_dir=f"file://{tmp_path}/u", record=True))
    assert recorder is not None
    assert on_uri is not None
    assert recorder.directory.location.startswith(f"{tmp_path}/recordings/")
    assert on_uri.directory.location.startswith(f"file://{tmp_path}/u/recordings/")
    recorder.close()
    on_uri.close()
