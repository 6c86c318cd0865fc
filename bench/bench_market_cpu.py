"""CPU the market side costs at the default feed rate: auto-sized shards vs two shards.

Starts the feed actor and its shard actors (``actors.market.start_market``) on a local
Ray cluster with the default symbols and simulator rates, lets them warm up, then reads
the CPU time the feed and shard processes used over BENCH_SECONDS (default 20). Runs
twice in the same process: with ``num_shards`` left to the settings (one per 1,000
symbols) and with two shards, the previous default (the baseline). Every batch sent to a
shard is a Ray call, so the CPU follows the number of calls more than the number of
ticks. Prints one JSON object: cores used by each and their ratio.

    python bench/bench_market_cpu.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
WARMUP_S = 5.0


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def measure(num_shards: int) -> dict[str, Any]:
    """Cores used by the feed and shard actors with ``num_shards`` (0 = auto)."""
    import ray

    from actors.market import start_market
    from core.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="bench-market-cpu-"))
    settings = Settings(num_shards=num_shards, data_dir=data_dir)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="marketray")
    try:
        actors = start_market(settings)
        pids = ray.get([a.__ray_call__.remote(lambda self: os.getpid())
                        for a in [actors.feed, *actors.shards]])
        time.sleep(WARMUP_S)
        before, started = _cpu_seconds(pids), time.perf_counter()
        batches_before = ray.get(actors.feed.status.remote())["batches"]
        time.sleep(SECONDS)
        used, elapsed = _cpu_seconds(pids) - before, time.perf_counter() - started
        status = ray.get(actors.feed.status.remote())
    finally:
        ray.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"shards": settings.num_shards, "symbols": len(settings.symbols),
            "cores": round(used / elapsed, 3),
            "batches_per_s": round((status["batches"] - batches_before) / elapsed, 1),
            "ticks": status["ticks"], "shard_errors": status["shard_errors"]}


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    auto = measure(0)
    two = measure(2)
    emit({"benchmark": "market_side_cpu_at_default_rate", "unit": "cores (feed + shards)",
          "figure": auto, "baseline": two, "baseline_name": "two shard actors (old default)",
          "ratio": round(auto["cores"] / two["cores"], 3),
          "load_average": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
