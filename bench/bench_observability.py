"""What observability costs: REST req/s and shard ingest with it on vs off; audit writes.

Three parts, each against a baseline measured in the same run:

- ``audit``: :class:`AuditWriter` entries/s (hash chain, batched writes) against a plain
  buffered append of the same entries as JSON lines to one file.
- ``hooks``: CPU per request of the pipeline hooks (metrics, request log, audit entry, the
  periodic flush included) against :class:`NoHooks`.
- ``ingest``: ticks/s of :class:`market.shard.Shard` ingest with the shard actor's
  per-batch metrics against the bare ingest (in-process, no Ray).
- ``rest`` (``BENCH_REST=1``, the default): two ``marketray serve`` at once, one with
  ``MARKETRAY_OBSERVABILITY=false``; wrk alternates between them ``BENCH_ROUNDS`` times
  on ``GET /market/{symbol}``; ratio of medians and median of per-round ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from actors.telemetry import Recorder, record_ingest  # noqa: E402
from bench.common import emit, wrk  # noqa: E402
from serve.hooks import NoHooks, RequestRecord  # noqa: E402
from serve.observability.audit import AuditWriter, verify_dir  # noqa: E402
from serve.observability.logs import RequestLog  # noqa: E402
from serve.observability.pipeline import ObservabilityHooks  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ENTRIES = int(os.environ.get("BENCH_AUDIT_ENTRIES", "100000"))


def _entry(i: int) -> dict[str, Any]:
    return {"request_id": f"req-{i:08d}", "subject": "alice", "role": "viewer", "jti": "j-1",
            "client": "10.1.2.3", "user_agent": "bench/1.0",
            "resource": {"route": "/market/{symbol}", "method": "GET", "target": "AAPL"},
            "outcome": {"status": 200, "reason": None}}


def _best(func: Callable[[], float], repeats: int = 3) -> float:
    return min(func() for _ in range(repeats))


def bench_audit(work: Path) -> dict[str, Any]:
    entries = [_entry(i) for i in range(ENTRIES)]

    def plain() -> float:
        path = work / f"plain-{time.perf_counter_ns()}.jsonl"
        started = time.perf_counter()
        with path.open("w") as handle:
            for entry in entries:
                handle.write(json.dumps({"time": time.time(), "action": "data.read", **entry})
                             + "\n")
        return time.perf_counter() - started

    def chained() -> float:
        writer = AuditWriter(work / "audit", f"bench-{time.perf_counter_ns()}")
        started = time.perf_counter()
        for entry in entries:
            writer.append("data.read", **entry)
        writer.flush()
        return time.perf_counter() - started

    pairs = []
    for i in range(ROUNDS + 2):  # alternating order: a noisy host's slow spell hits both
        if i % 2 == 0:
            p = plain()
            c = chained()
        else:
            c = chained()
            p = plain()
        pairs.append((p, c))
    plain_s = statistics.median(p for p, _ in pairs)
    chained_s = statistics.median(c for _, c in pairs)
    reports = verify_dir(work / "audit")
    assert all(r.problem is None and r.entries == ENTRIES for r in reports), reports
    return {"entries": ENTRIES, "rounds": len(pairs),
            "audit_entries_per_s": ENTRIES / chained_s,
            "baseline_plain_append_per_s": ENTRIES / plain_s,
            "ratio": statistics.median(p / c for p, c in pairs)}


def bench_hooks(work: Path) -> dict[str, Any]:
    n = 50_000
    records = [RequestRecord(request_id=f"r{i}", kind="http", method="GET",
                             route="/market/{symbol}", client="10.1.2.3", user_agent="bench",
                             status=200, latency_s=0.002, started_at=time.time(),
                             subject="alice", role="viewer", jti="j", resource="AAPL")
               for i in range(n)]

    def run(make: Callable[[], Any]) -> float:
        hooks = make()
        started = time.thread_time()
        for record in records:
            hooks.on_request_start("http", record.route)
            hooks.on_request_end(record)
        if hasattr(hooks, "flush"):  # the export thread's work, done here and counted
            hooks.flush()
            hooks.export_gauges()
            hooks.recorder.drain()
        return (time.thread_time() - started) / n

    def observed() -> ObservabilityHooks:
        tag = time.perf_counter_ns()
        return ObservabilityHooks(Recorder(), audit=AuditWriter(work / "hooks", f"h{tag}"),
                                  request_log=RequestLog(work / f"requests-{tag}.jsonl"))

    on_s, off_s = _best(lambda: run(observed)), _best(lambda: run(NoHooks))
    return {"requests": n, "cpu_us_per_request": on_s * 1e6,
            "baseline_no_hooks_cpu_us_per_request": off_s * 1e6,
            "added_cpu_us_per_request": (on_s - off_s) * 1e6,
            "note": "metric export to Ray (ray.util.metrics) runs once a second per series, "
                    "not per request, and is not in this figure"}


def bench_ingest() -> dict[str, Any]:
    import asyncio

    from bench.bench_market_ingest import universe
    from market.feeds.sim import SimulatedFeed
    from market.shard import Shard

    symbols = universe(500)
    rate = 200_000.0
    feed = SimulatedFeed(symbols, seed=1, rate=rate, option_rate=rate / 10)
    warm = asyncio.run(feed.warmup())
    start_ns = time.time_ns()
    batches = [feed.next_batch(start_ns + (i + 1) * 20_000_000) for i in range(100)]
    ticks = sum(len(b.ticks) + len(b.option_ticks) for b in batches)
    recorder = Recorder()

    def run(with_metrics: bool) -> float:
        shard = Shard(symbols, symbols)
        shard.ingest(None, None, warm.bars, warm.chains)
        started = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            result = shard.ingest(batch.ticks, batch.option_ticks, None, batch.chains or None)
            if with_metrics:  # what ShardActor.ingest adds per batch
                record_ingest(recorder, "0", result, len(batch.option_ticks),
                              time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        recorder.drain()
        return elapsed

    rounds = []
    for i in range(5):  # alternate which arm goes first
        if i % 2 == 0:
            on = run(True)
            off = run(False)
        else:
            off = run(False)
            on = run(True)
        rounds.append((on, off))
    on_s = statistics.median(r[0] for r in rounds)
    off_s = statistics.median(r[1] for r in rounds)
    # The metric calls alone, many times: a figure the host's noise does not swamp.
    result = {"ticks": 7_000, "contracts_refreshed": 300}
    calls = 20_000
    started = time.thread_time()
    for _ in range(calls):
        record_ingest(recorder, "0", result, 700, 0.005)
    metrics_us = (time.thread_time() - started) / calls * 1e6
    recorder.drain()
    return {"ticks": ticks, "batches": len(batches), "ticks_per_s_metrics_on": ticks / on_s,
            "baseline_ticks_per_s_metrics_off": ticks / off_s, "ratio": off_s / on_s,
            "metrics_cpu_us_per_batch": metrics_us,
            "ingest_ms_per_batch_metrics_off": off_s / len(batches) * 1e3,
            "target_ratio": 0.95}


def bench_health_checks() -> dict[str, Any]:
    """CPU of the deep checks /health adds (inputs as /health has them; no Ray)."""
    from serve.observability.health import deep_checks

    usage = {"pid": 1, "cpu_percent": 12.0, "rss_mb": 400.0}
    shards = [{"process": usage} for _ in range(4)]
    feed = {"process": usage, "shards": 4, "shards_waiting": [1], "shards_waiting_avg": 0.2}
    n = 2_000
    started = time.thread_time()
    for _ in range(n):
        deep_checks(shards, feed, {"queued": 0}, {"pending_uploads": 0})
    return {"calls": n, "cpu_us_per_call": (time.thread_time() - started) / n * 1e6,
            "note": "includes this process's psutil reading; shard and feed usage come "
                    "with the status calls /health already made"}


def bench_rest() -> dict[str, Any]:
    from serve.local_service import start_service

    env = {"MARKETRAY_SIM_RATE": "2000", "MARKETRAY_SYMBOLS": "AAPL,MSFT",
           "MARKETRAY_RATE_LIMIT_ENABLED": "false"}
    with ExitStack() as stack:
        on = stack.enter_context(start_service(env, args=("--no-knowledge", "--no-assistant")))
        off = stack.enter_context(start_service(
            {**env, "MARKETRAY_OBSERVABILITY": "false"},
            args=("--no-knowledge", "--no-assistant")))
        urls = {name: (f"{svc.base_url}/market/AAPL", svc.auth("viewer"))
                for name, svc in (("on", on), ("off", off))}
        for url, headers in urls.values():
            wrk(url, seconds=2, headers=headers)  # warm-up
        health_ms = _health_latency(on.base_url)
        rounds = []
        for i in range(ROUNDS):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            result = {name: wrk(urls[name][0], seconds=SECONDS, headers=urls[name][1])
                      for name in order}
            rounds.append(result)
    on_rps = [r["on"]["requests_per_s"] for r in rounds]
    off_rps = [r["off"]["requests_per_s"] for r in rounds]
    return {"route": "GET /market/{symbol}", "rounds": ROUNDS, "seconds_per_run": SECONDS,
            "observability_on_rps": statistics.median(on_rps),
            "baseline_observability_off_rps": statistics.median(off_rps),
            "ratio_of_medians": statistics.median(on_rps) / statistics.median(off_rps),
            "median_per_round_ratio": statistics.median(
                r["on"]["requests_per_s"] / r["off"]["requests_per_s"] for r in rounds),
            "p99_ms_on": statistics.median(r["on"]["p99_ms"] for r in rounds),
            "p99_ms_off": statistics.median(r["off"]["p99_ms"] for r in rounds),
            "non_2xx": sum(r[n]["non_2xx"] for r in rounds for n in ("on", "off")),
            "per_round": [{n: r[n]["requests_per_s"] for n in ("on", "off")} for r in rounds],
            "target_ratio": 0.95, "health": health_ms}


def _health_latency(base_url: str, n: int = 300) -> dict[str, float]:
    """GET /health one at a time (deep checks included): p50/p99 in ms; target p99 50 ms."""
    import httpx

    times = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        client.get("/health")
        for _ in range(n):
            started = time.perf_counter()
            status = client.get("/health").json()["status"]
            times.append((time.perf_counter() - started) * 1e3)
    ordered = sorted(times)
    return {"requests": n, "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[int(0.99 * (n - 1))], "last_status": status, "target_p99_ms": 50}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="marketray-bench-obs-"))
    result: dict[str, Any] = {"benchmark": "observability", "cpus": os.cpu_count(),
                              "audit": bench_audit(work), "hooks": bench_hooks(work),
                              "ingest": bench_ingest(), "health_checks": bench_health_checks()}
    if os.environ.get("BENCH_REST", "1") == "1":
        result["rest"] = bench_rest()
    emit(result)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
