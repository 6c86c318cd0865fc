"""Deep ``/health`` checks: process resources, object store use and queue lengths.

Each check reports its value with the thresholds that make it ``degraded`` or
``unhealthy``. Everything read here is already at hand (the shard and feed status calls
``/health`` makes anyway, this process) or cached (the object store, refreshed at most
every :data:`OBJECT_STORE_TTL_S`), so the checks add no remote call of their own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.telemetry import process_usage

OBJECT_STORE_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class Threshold:
    """``value > degraded`` is degraded, ``value > unhealthy`` unhealthy (None: never)."""

    degraded: float
    unhealthy: float | None

    def judge(self, value: float | None) -> str:
        """The status of ``value`` (``ok`` when unknown: a missing figure is not a fault)."""
        if value is None:
            return "ok"
        if self.unhealthy is not None and value > self.unhealthy:
            return "unhealthy"
        return "degraded" if value > self.degraded else "ok"


# Documented in docs/operations.md; a process at 100 % of one core is busy, not broken.
THRESHOLDS: dict[str, Threshold] = {
    "process_cpu_percent": Threshold(95.0, None),
    "process_rss_mb": Threshold(4_096.0, 12_288.0),
    "object_store_used_fraction": Threshold(0.8, 0.95),
    # Share of shards still applying their previous batch, averaged over recent samples.
    "feed_shards_waiting_fraction": Threshold(0.6, 0.9),
    "generation_queue": Threshold(8.0, 64.0),
    "ingest_jobs": Threshold(10.0, 100.0),
}

_STORE: dict[str, Any] = {"at": 0.0, "value": None}


def object_store_usage() -> dict[str, Any] | None:
    """Object store bytes in use and capacity over the cluster (cached; None without Ray)."""
    now = time.monotonic()
    if now - _STORE["at"] < OBJECT_STORE_TTL_S:
        cached: dict[str, Any] | None = _STORE["value"]
        return cached
    value = None
    try:
        import ray

        if ray.is_initialized():
            total = float(ray.cluster_resources().get("object_store_memory", 0.0))
            free = float(ray.available_resources().get("object_store_memory", 0.0))
            if total > 0:
                value = {"used_mb": round((total - free) / 2**20, 1),
                         "capacity_mb": round(total / 2**20, 1),
                         "used_fraction": round((total - free) / total, 4)}
    except Exception:  # noqa: BLE001 - an unreachable GCS shows as unknown, not as a 500
        value = None
    _STORE.update(at=now, value=value)
    return value


def _check(name: str, value: float | None, **detail: Any) -> dict[str, Any]:
    threshold = THRESHOLDS[name]
    return {"status": threshold.judge(value), "value": value,
            "degraded_above": threshold.degraded, "unhealthy_above": threshold.unhealthy,
            **detail}


def _worst(*statuses: str) -> str:
    order = ("ok", "degraded", "unhealthy")
    return max(statuses, key=order.index, default="ok")


def process_check(role: str, usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """CPU and memory of one process against their thresholds."""
    if not usage:
        return {"status": "ok", "role": role, "value": None}
    cpu = _check("process_cpu_percent", usage.get("cpu_percent"))
    rss = _check("process_rss_mb", usage.get("rss_mb"))
    return {"status": _worst(cpu["status"], rss["status"]), "role": role,
            "pid": usage.get("pid"), "cpu_percent": cpu, "rss_mb": rss}


def deep_checks(shard_stats: Sequence[Mapping[str, Any] | None],
                feed: Mapping[str, Any] | None,
                generator: Mapping[str, Any] | None = None,
                knowledge: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``resources`` and ``queues`` checks from what ``/health`` already fetched."""
    processes = {"replica": process_check("replica", process_usage())}
    for i, stats in enumerate(shard_stats):
        if stats is not None:
            processes[f"shard-{i}"] = process_check("shard", stats.get("process"))
    if feed is not None:
        processes["feed"] = process_check("feed", feed.get("process"))
    store = object_store_usage()
    store_check = _check("object_store_used_fraction",
                         None if store is None else store["used_fraction"], **(store or {}))
    resources = {"status": _worst(store_check["status"],
                                  *(p["status"] for p in processes.values())),
                 "processes": processes, "object_store": store_check}

    waiting = list((feed or {}).get("shards_waiting") or [])
    average = (feed or {}).get("shards_waiting_avg")
    feed_queue = _check("feed_shards_waiting_fraction", average, shards_waiting=waiting)
    generation = _check("generation_queue", None if generator is None
                        else float(generator.get("queued", 0)))
    ingest = _check("ingest_jobs", None if knowledge is None
                    else float(knowledge.get("pending_uploads", 0)))
    queues = {"status": _worst(feed_queue["status"], generation["status"], ingest["status"]),
              "feed_backlog": feed_queue, "generation": generation, "ingest": ingest}
    return {"resources": resources, "queues": queues}
