"""Recovery time of the market after a node dies, median of several runs.

One ``ray.cluster_utils.Cluster``: a head with no CPUs and two worker nodes; the market
actors (``start_market``: shards and feed spread over the workers) run the simulated feed.
Each run removes the worker holding the most shards without grace (its raylet and workers
are killed), then times until every symbol's snapshot answers again from a shard on a live
node, and checks that the restarted shards carry bars; a fresh worker then joins for the
next run. The check asks each symbol's shard actor directly (the ingress's caches would
answer from memory). Two settings of the GCS health check, which decides how soon a silent
node is declared dead, are measured in the same run: Ray's defaults and a 1 s period
(``BENCH_FAST_PERIOD_MS``). The baseline beside the recovery time is the time the same
check takes on the healthy cluster just before the node is removed. The feed journals its
ticks in Redis (``BENCH_REDIS_URL``, default database 3 of the local server; ``none`` for
the in-memory journal), as a deployment with ``redis_url`` does, so a run that loses the
feed's node measures its resume (history restore and journal replay) too.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FAST_PERIOD_MS = int(os.environ.get("BENCH_FAST_PERIOD_MS", "1000"))
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ", "AMZN", "META")
LIMIT_S = 120.0
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")


def _all_answer(actors: Any) -> bool:
    """Every symbol's snapshot, asked of its shard actor (no cache between), has a price and
    its indicators: the shard is alive on a live node and re-seeded."""
    import ray

    from market.sharding import shard_of

    refs = [actors.shards[shard_of(s, len(actors.shards))].snapshot.remote(s) for s in SYMBOLS]
    try:
        snapshots = ray.get(refs, timeout=3.0)
    except Exception:  # noqa: BLE001 - dead, restarting, not re-seeded yet: not yet
        return False
    return all(s["price"] > 0 and s["indicators"].get("sma_20") is not None for s in snapshots)


def _shard_nodes() -> dict[str, list[str]]:
    """Node id -> names of the live shard actors there (from the GCS's actor table)."""
    import ray

    nodes: dict[str, list[str]] = {}
    for actor in ray._private.state.actors().values():
        if actor["ActorClassName"] == "ShardActor" and actor["State"] == "ALIVE":
            nodes.setdefault(actor["Address"]["NodeID"], []).append(actor["Name"])
    return nodes


def _restarted(actors: Any, names: list[str], before: dict[str, str]) -> bool:
    """Whether every shard in ``names`` answers as a new incarnation (the killed node's
    worker processes can still answer for a moment after its raylet is gone)."""
    import ray

    from actors.sharding import shard_name

    index = {shard_name(i): i for i in range(len(actors.shards))}
    try:
        stats = ray.get([actors.shards[index[n]].stats.remote() for n in names], timeout=3.0)
    except Exception:  # noqa: BLE001 - still restarting
        return False
    return all(st["incarnation"] != before[n] for st, n in zip(stats, names, strict=True))


def _feed_status(feed: Any) -> dict[str, Any]:
    import ray

    deadline = time.monotonic() + 60
    while True:  # the feed may itself be restarting after the last removal
        try:
            status: dict[str, Any] = ray.get(feed.status.remote(), timeout=10)
            return status
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _redis_url() -> str | None:
    """The journal's Redis when it answers (its keys are removed at the end), else None."""
    if REDIS_URL == "none":
        return None
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0).ping()
    except redis.RedisError:
        return None
    return REDIS_URL


def _feed_node() -> str | None:
    import ray

    for actor in ray._private.state.actors().values():
        if actor["ActorClassName"] == "FeedActor" and actor["State"] == "ALIVE":
            return str(actor["Address"]["NodeID"])
    return None


def _arm(system_config: dict[str, Any], redis_url: str | None) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from actors.market import start_market
    from core.settings import Settings

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": system_config})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="marketray", log_to_driver=False)
    runs: list[dict[str, float]] = []
    try:
        settings = Settings(symbols=SYMBOLS, num_shards=2, market_actor_cpus=0.5,
                            data_dir=Path(tempfile.mkdtemp(prefix="bench-failover-")),
                            redis_url=redis_url)
        actors = start_market(settings)
        for _ in range(RUNS):
            deadline = time.monotonic() + 60
            while True:  # the market answers before the loss (warm-up done)
                t0 = time.monotonic()
                if _all_answer(actors):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the market did not answer before the node loss")
                time.sleep(0.5)
            healthy_s = time.monotonic() - t0
            shards = _shard_nodes()
            victim = max((w for w in workers if w.node_id in shards),
                         key=lambda w: len(shards[w.node_id]))
            moved = shards[victim.node_id]
            feed_moved = _feed_node() == victim.node_id
            before = {n: st["incarnation"] for n, st in zip(
                moved, ray.get([ray.get_actor(n, namespace="marketray").stats.remote()
                                for n in moved]), strict=True)}
            cluster.remove_node(victim, allow_graceful=False)
            removed = time.monotonic()
            workers.remove(victim)
            while not (_restarted(actors, moved, before) and _all_answer(actors)):
                if time.monotonic() - removed > LIMIT_S:
                    raise SystemExit(f"no recovery within {LIMIT_S} s")
                time.sleep(0.1)
            runs.append({"recovery_s": time.monotonic() - removed, "healthy_check_s": healthy_s,
                         "shards_moved": len(moved), "feed_moved": feed_moved})
            workers.append(cluster.add_node(num_cpus=2))
            cluster.wait_for_nodes()
        feed = _feed_status(actors.feed)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if redis_url is not None:
            from market.cache.tick_journal import RedisJournal

            RedisJournal(redis_url).clear(2)
    recovery = [r["recovery_s"] for r in runs]
    return {"runs": runs, "median_recovery_s": statistics.median(recovery),
            "max_recovery_s": max(recovery),
            "median_healthy_check_s": statistics.median(r["healthy_check_s"] for r in runs),
            "feed_reseeds": feed["reseeds"], "restored_bars": feed["restored_bars"],
            "feed_resumes_last_incarnation": feed["resumes"],
            "replayed_ticks_last_incarnation": feed["replayed_ticks"]}


def main() -> None:
    redis_url = _redis_url()
    default = _arm({}, redis_url)
    fast = _arm({"health_check_period_ms": FAST_PERIOD_MS}, redis_url)
    emit({"benchmark": "failover_node_loss", "runs": RUNS, "machine_cores": os.cpu_count(),
          "journal": "redis" if redis_url else "memory",
          "default_health_check": default,
          f"health_check_period_{FAST_PERIOD_MS}ms": fast,
          "baseline": "median_healthy_check_s: the same all-symbols check on the healthy "
                      "cluster just before each removal"})


if __name__ == "__main__":
    main()
