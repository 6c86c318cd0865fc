"""End-to-end market ingest: simulated ticks/s through feed → shards, and tick latency.

For each universe size (500 and 5,000 symbols):

* baseline — one plain Python process, no Ray: the simulator's batches applied
  to a single :class:`market.shard.Shard` holding every symbol (the same
  indicator and chain updates), ticks/s over pre-generated batches;
* ray — the feed actor and ``num_shards`` shard actors on a local Ray cluster,
  the simulator offered ``rate`` messages/s; sustained ticks/s is the growth of
  the shards' tick counters over wall time (the feed makes bigger batches when
  shards fall behind, so this is min(offered, capacity)).

Then the latency from a tick's creation to its arrival at a WebSocket client:
a real `marketray serve` with 500 symbols at the offered rate, a client
subscribed to 20 symbols; latency = receive time − the frame's last-trade time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

RATE = float(os.environ.get("BENCH_RATE", "400000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "500,5000").split(",")]


def universe(n: int) -> tuple[str, ...]:
    return tuple(f"SYM{i:05d}"[:10] for i in range(n))


def baseline(symbols: tuple[str, ...]) -> dict[str, float]:
    from market.feeds.sim import SimulatedFeed
    from market.shard import Shard

    feed = SimulatedFeed(symbols, seed=1, rate=RATE, option_rate=RATE / 10)
    warm = asyncio.run(feed.warmup())
    shard = Shard(symbols, symbols)
    shard.ingest(None, None, warm.bars, warm.chains)
    start_ns = time.time_ns()
    batches = [feed.next_batch(start_ns + (i + 1) * 20_000_000) for i in range(100)]
    ticks = sum(len(b.ticks) + len(b.option_ticks) for b in batches)
    t0 = time.perf_counter()
    for b in batches:
        shard.ingest(b.ticks, b.option_ticks, None, b.chains or None)
    elapsed = time.perf_counter() - t0
    return {"ticks": ticks, "seconds": elapsed, "ticks_per_s": ticks / elapsed}


def with_ray(symbols: tuple[str, ...]) -> dict[str, float]:
    import ray

    from actors.market import start_market
    from core.settings import Settings

    settings = Settings(symbols=symbols, sim_rate=RATE, sim_option_rate=RATE / 10,
                        num_shards=int(os.environ.get("BENCH_SHARDS", "2")))
    ray.init(include_dashboard=False, log_to_driver=False, namespace="marketray")
    try:
        actors = start_market(settings)
        time.sleep(3.0)

        def total() -> tuple[int, float]:
            stats = ray.get([s.stats.remote() for s in actors.shards])
            return sum(s["ticks"] + s["option_ticks"] for s in stats), time.perf_counter()

        n0, t0 = total()
        time.sleep(SECONDS)
        n1, t1 = total()
        feed = ray.get(actors.feed.status.remote())
    finally:
        ray.shutdown()
    return {"ticks_per_s": (n1 - n0) / (t1 - t0), "offered_per_s": RATE * 1.1,
            "feed_batches": feed["batches"], "shard_errors": feed["shard_errors"]}


async def _collect(url: str, symbols: list[str], seconds: float) -> list[float]:
    import orjson
    import websockets

    latencies: list[float] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(orjson.dumps({"action": "subscribe", "symbols": symbols}).decode())
        end = time.time() + seconds
        while time.time() < end:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            now = time.time()
            if message.get("type") == "market":
                ts = datetime.fromisoformat(message["data"]["timestamp"]).timestamp()
                latencies.append((now - ts) * 1e3)
    return latencies


def latency() -> dict[str, float]:
    from serve.local_service import start_service

    symbols = universe(500)
    env = {"MARKETRAY_SYMBOLS": ",".join(symbols), "MARKETRAY_SIM_RATE": str(RATE / 2),
           "MARKETRAY_SIM_OPTION_RATE": "2000"}
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       ready_path=f"/market/{symbols[0]}") as svc:
        time.sleep(3)
        url = f"{svc.ws_url}/?token={svc.token('viewer')}"
        samples = asyncio.run(_collect(url, list(symbols[:20]), SECONDS))
    arr = np.array(samples[len(samples) // 10:])  # skip the first frames (initial snapshots)
    return {"frames": len(arr), "offered_rate": RATE / 2, "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}


def main() -> None:
    results: dict[str, object] = {"benchmark": "market_ingest", "offered_rate": RATE}
    for n in SIZES:
        symbols = universe(n)
        base = baseline(symbols)
        ray_result = with_ray(symbols)
        results[f"symbols_{n}"] = {"baseline_single_process": base, "ray": ray_result,
                                   "ratio_vs_baseline": ray_result["ticks_per_s"]
                                   / base["ticks_per_s"]}
    results["tick_to_client_latency"] = latency()
    results["targets"] = {"ticks_per_s": 250_000, "p99_ms": 100}
    emit(results)


if __name__ == "__main__":
    main()
