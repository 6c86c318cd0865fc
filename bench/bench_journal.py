"""What the feed's tick journal costs per batch: Redis streams against the in-memory one.

The feed writes every streamed batch, split by shard, to its journal before sending it
(market.feeds.journal), so the journal's append is on the feed's hot path. This times the
append of one 20 ms batch (one pipelined round trip to Redis for all shards) at several
message rates, and the read a resuming feed does (a minute of one shard's ticks), against
the in-memory journal's append in the same run (the baseline: what the feed did before).
Redis is ``BENCH_REDIS_URL`` (default database 3 of the local server; keys removed after).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402
from market.cache.tick_journal import RedisJournal  # noqa: E402
from market.feeds.base import NS_PER_MINUTE, TRADE, BarBatch, TickBatch  # noqa: E402
from market.feeds.journal import MemoryJournal  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
RATES = (2_000, 40_000, 440_000)  # messages/s: the sim's default, a busy feed, bench_scale's
SHARDS = int(os.environ.get("BENCH_SHARDS", "8"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "200"))
PERIOD_S = 0.02


def _batch(rng: np.random.Generator, count: int, start_ns: int) -> TickBatch:
    n = max(count, 1)
    return TickBatch.from_columns(
        kind=np.full(n, TRADE), symbol_id=rng.integers(0, 2_000, n),
        ts_ns=start_ns + np.sort(rng.integers(0, round(PERIOD_S * 1e9), n)),
        price=rng.uniform(10, 500, n), size=np.full(n, 100.0), bid=np.full(n, np.nan),
        ask=np.full(n, np.nan), bid_size=np.full(n, np.nan), ask_size=np.full(n, np.nan))


def _parts(batch: TickBatch) -> dict[int, tuple[TickBatch, BarBatch]]:
    owner = batch.symbol_id % SHARDS
    return {k: (batch.take(owner == k), BarBatch.empty()) for k in range(SHARDS)}


def _time_appends(journal: RedisJournal | MemoryJournal, batches: list[TickBatch]) -> list[float]:
    parts = [_parts(b) for b in batches]  # the router splits before it journals
    times = []
    for part in parts:
        t0 = time.perf_counter()
        journal.append(part)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    rng = np.random.default_rng(3)
    prefix = f"marketray-bench-{uuid.uuid4().hex[:8]}:journal:"
    redis_journal = RedisJournal(REDIS_URL, prefix=prefix, timeout_s=5.0)
    rows = []
    try:
        for rate in RATES:
            start = time.time_ns() // NS_PER_MINUTE * NS_PER_MINUTE
            batches = [_batch(rng, round(rate * PERIOD_S), start + i * round(PERIOD_S * 1e9))
                       for i in range(BATCHES)]
            memory = _time_appends(MemoryJournal(), batches)
            redis_times = _time_appends(redis_journal, batches)
            t0 = time.perf_counter()
            ticks, _ = redis_journal.read(0, 0)
            read_s = time.perf_counter() - t0
            redis_journal.clear(SHARDS)
            rows.append({
                "messages_per_s": rate, "ticks_per_batch": len(batches[0]),
                "redis_append_p50_us": statistics.median(redis_times) * 1e6,
                "redis_append_p99_us": float(np.percentile(redis_times, 99)) * 1e6,
                "memory_append_p50_us": statistics.median(memory) * 1e6,
                "redis_share_of_period": statistics.median(redis_times) / PERIOD_S,
                "read_one_shard_s": read_s, "read_ticks": len(ticks),
                "read_covers_s": BATCHES * PERIOD_S,
                "errors": redis_journal.errors})
    finally:
        redis_journal.clear(SHARDS)
    emit({"benchmark": "tick_journal", "machine_cores": os.cpu_count(), "shards": SHARDS,
          "batches": BATCHES, "batch_period_s": PERIOD_S, "redis": REDIS_URL, "rows": rows,
          "baseline": "memory_append_p50_us: the in-memory journal's append of the same "
                      "batches, same run"})


if __name__ == "__main__":
    main()
