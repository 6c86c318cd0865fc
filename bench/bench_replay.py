"""Replay throughput: recorded ticks/s through ReplayFeed and on through the shards.

A recording is made once from the simulator (``BENCH_SYMBOLS`` symbols,
``BENCH_MINUTES`` simulated minutes at ``BENCH_RATE`` messages/s, one batch
per 100 ms). Then, in the same run:

* figure ``replay_to_shard`` — ReplayFeed at speed 0 (rebuild the recorded
  batches) applied to one in-process :class:`market.shard.Shard` holding every
  symbol: the full domain path, no Ray; stream only (loading the files and the
  shard's warm-up are reported apart), after a first pass that compiles numba;
* ``replay_feed_only`` — ReplayFeed → batches, nothing applied;
* ``ray_full_path`` (``BENCH_RAY=1``, default) — ``MARKETRAY_FEED=replay``
  through the feed actor and the shard actors on a local Ray cluster;
* baseline — plain polars ``scan_parquet(...).collect()`` of the same tick files
  (rows/s): the cost of just reading the data.

Also the recorder's write rate (rows/s). Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

N_SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "100"))
MINUTES = float(os.environ.get("BENCH_MINUTES", "5"))
RATE = float(os.environ.get("BENCH_RATE", "5000"))
RAY = os.environ.get("BENCH_RAY", "1") == "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def record(root: Path) -> tuple[tuple[str, ...], int, float]:
    from market.feeds.recorder import TickRecorder
    from market.feeds.sim import SimulatedFeed

    symbols = tuple(f"S{i:04d}" for i in range(N_SYMBOLS))
    start_ns = 1_795_500_000 * 1_000_000_000
    sim = SimulatedFeed(symbols, rate=RATE, option_rate=RATE / 10, interval_ms=100,
                        clock=lambda: start_ns)
    warm = asyncio.run(sim.warmup())
    batches = [sim.next_batch(start_ns + (i + 1) * 100_000_000)
               for i in range(int(MINUTES * 600))]
    recorder = TickRecorder(root)
    t0 = time.perf_counter()
    recorder.write(warm, symbols, warmup=True)
    for batch in batches:
        recorder.write(batch, symbols)
    recorder.close()
    elapsed = time.perf_counter() - t0
    rows = sum(len(b.ticks) + len(b.option_ticks) + len(b.bars) for b in [warm, *batches])
    return symbols, rows, elapsed


async def replay(root: Path, symbols: tuple[str, ...], apply: bool) -> tuple[int, float, float]:
    """Return (stream ticks, stream seconds, load + warm-up seconds)."""
    from market.feeds.replay import ReplayFeed
    from market.shard import Shard

    t0 = time.perf_counter()
    feed = ReplayFeed(root, speed=0, symbols=symbols)
    shard = Shard(feed.symbols, feed.symbols) if apply else None
    warm = await feed.warmup()
    if shard is not None:
        shard.ingest(None, None, warm.bars, warm.chains)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ticks = 0
    async for batch in feed.stream():
        ticks += len(batch.ticks) + len(batch.option_ticks)
        if shard is not None:
            shard.ingest(batch.ticks, batch.option_ticks, batch.bars, batch.chains or None)
    return ticks, time.perf_counter() - t0, warm_s


def polars_baseline(root: Path) -> tuple[int, float]:
    import polars as pl

    files = sorted(root.rglob("ticks/*.parquet")) + sorted(root.rglob("option_ticks/*.parquet"))
    t0 = time.perf_counter()
    rows = sum(pl.scan_parquet(f).collect().height for f in files)
    return rows, time.perf_counter() - t0


def ray_path(root: Path, symbols: tuple[str, ...], expected: int) -> dict[str, float]:
    import ray

    from actors.market import start_market
    from core.settings import Settings

    settings = Settings(symbols=symbols, feed="replay", replay_dir=root, replay_speed=0,
                        num_shards=2)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="marketray-bench-replay")
    try:
        t0 = time.perf_counter()
        actors = start_market(settings)
        done, last_change, seen = 0, time.perf_counter(), -1
        while time.perf_counter() - last_change < 5 and done < expected:
            stats = ray.get([s.stats.remote() for s in actors.shards])
            done = sum(s["ticks"] + s["option_ticks"] for s in stats)
            if done != seen:
                seen, last_change = done, time.perf_counter()
            time.sleep(0.05)
        elapsed = last_change - t0
    finally:
        ray.shutdown()
    return {"ticks": done, "seconds_incl_actor_start": elapsed, "ticks_per_s": done / elapsed}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        root = Path(tmp)
        symbols, rows, write_s = record(root)
        feed_ticks, feed_s, load_s = asyncio.run(replay(root, symbols, apply=False))
        asyncio.run(replay(root, symbols, apply=True))  # compile the shard's numba kernels
        shard_ticks, shard_s, warm_s = asyncio.run(replay(root, symbols, apply=True))
        base_rows, base_s = polars_baseline(root)
        result: dict[str, object] = {
            "benchmark": "replay", "symbols": N_SYMBOLS, "simulated_minutes": MINUTES,
            "recorder_write_rows_per_s": rows / write_s,
            "replay_feed_only_ticks_per_s": feed_ticks / feed_s,
            "replay_load_seconds": load_s, "shard_warmup_seconds": warm_s,
            "figure": {"name": "replay_to_shard_ticks_per_s", "value": shard_ticks / shard_s,
                       "ticks": shard_ticks, "seconds": shard_s},
            "baseline": {"name": "polars_scan_parquet_rows_per_s", "value": base_rows / base_s,
                         "rows": base_rows},
        }
        result["ratio"] = (shard_ticks / shard_s) / (base_rows / base_s)
        if RAY:
            try:
                result["ray_full_path"] = ray_path(root, symbols, shard_ticks)
            except Exception as exc:  # noqa: BLE001 - report, keep the local figures
                result["ray_full_path"] = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)


if __name__ == "__main__":
    main()
