"""Application metrics through Ray's metrics system, recorded in batches.

Every metric the service exports is declared once in :data:`CATALOGUE` (names
``marketray_*``; Ray's metrics agent exports them as ``ray_marketray_*`` on each node's
metrics port). Callers record into a per-process :class:`Recorder`, a few dictionary
operations; a daemon thread hands the accumulated counts to ``ray.util.metrics`` once a
period, because one ``ray.util.metrics`` call costs several times a dict update
(``bench/bench_observability.py``). Label values must come from bounded sets: route
templates, configured shard numbers, fixed reasons.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

MetricKind = Literal["counter", "gauge", "histogram"]
# Request latency buckets in seconds: 11 bounds (12 buckets with +Inf).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Slow operations (generation, ingest batches, searches), seconds.
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: Prometheus name (before Ray's ``ray_`` prefix) and labels."""

    name: str
    kind: MetricKind
    description: str
    tags: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


def _spec(name: str, kind: MetricKind, description: str, *tags: str,
          buckets: tuple[float, ...] = ()) -> MetricSpec:
    return MetricSpec(name, kind, description, tags, buckets)


CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in (
    # Requests (the request pipeline's hooks).
    _spec("marketray_requests_total", "counter",
          "HTTP requests and WebSocket connections by route template, method and status",
          "kind", "route", "method", "status"),
    _spec("marketray_request_duration_seconds", "histogram",
          "HTTP request latency by route template", "route", buckets=LATENCY_BUCKETS),
    _spec("marketray_requests_in_flight", "gauge",
          "requests and WebSocket connections being served", "kind"),
    _spec("marketray_rate_limited_total", "counter", "requests refused by the rate limit",
          "kind", "route"),
    _spec("marketray_auth_failures_total", "counter",
          "authentication, authorisation and address refusals by reason", "kind", "reason"),
    _spec("marketray_audit_entries_total", "counter", "audit entries written"),
    _spec("marketray_audit_errors_total", "counter", "audit entries lost to write errors"),
    # WebSocket streams.
    _spec("marketray_ws_connections", "gauge", "open WebSocket connections", "stream"),
    _spec("marketray_ws_frames_sent_total", "counter", "frames sent to clients", "stream"),
    _spec("marketray_ws_frames_conflated_total", "counter",
          "updates merged into a newer frame for a slow client", "stream"),
    _spec("marketray_ws_clients_behind", "gauge",
          "clients whose outbox holds unsent frames", "stream"),
    _spec("marketray_ws_outbox_frames", "gauge", "frames waiting in all outboxes", "stream"),
    _spec("marketray_ws_closes_total", "counter", "WebSocket closes by code",
          "stream", "code"),
    # Feed.
    _spec("marketray_feed_messages_total", "counter", "feed messages by kind", "kind"),
    _spec("marketray_feed_newest_tick_age_seconds", "gauge",
          "wall time since the newest tick the feed routed"),
    _spec("marketray_feed_reconnects_total", "counter", "feed reconnections"),
    _spec("marketray_feed_malformed_total", "counter", "malformed feed messages by reason",
          "reason"),
    _spec("marketray_feed_backfilled_bars_total", "counter",
          "bars backfilled at start or after a gap"),
    _spec("marketray_feed_batches_waiting", "gauge",
          "feed batches waiting for a shard's previous call (backpressure)", "shard"),
    # Shards.
    _spec("marketray_shard_starts_total", "counter",
          "shard actor starts (a restart adds one)", "shard"),
    _spec("marketray_shard_ingest_seconds", "histogram", "time to apply one ingest batch",
          "shard", buckets=LATENCY_BUCKETS),
    _spec("marketray_shard_ticks_total", "counter", "ticks applied", "shard", "kind"),
    _spec("marketray_shard_chains_refreshed_total", "counter", "option contracts repriced",
          "shard"),
    _spec("marketray_shard_stale_chains", "gauge",
          "chains whose quotes moved over a second after their analytics", "shard"),
    _spec("marketray_shard_snapshot_age_seconds", "gauge",
          "wall time since the shard's newest applied tick", "shard"),
    # Knowledge base and assistant.
    _spec("marketray_kb_ingested_total", "counter",
          "documents, pages and chunks ingested", "unit"),
    _spec("marketray_kb_skipped_total", "counter", "documents or pages skipped by reason",
          "reason"),
    _spec("marketray_kb_index_version", "gauge", "published index version"),
    _spec("marketray_kb_index_chunks", "gauge", "chunks in the published index"),
    _spec("marketray_kb_search_seconds", "histogram", "knowledge-base search latency",
          buckets=SLOW_BUCKETS),
    _spec("marketray_llm_time_to_first_token_seconds", "histogram",
          "generation time to first token", buckets=SLOW_BUCKETS),
    _spec("marketray_llm_tokens_total", "counter", "tokens generated"),
    _spec("marketray_llm_queue_length", "gauge", "generation requests waiting"),
    _spec("marketray_llm_active_sequences", "gauge", "sequences being generated"),
    # Cache.
    _spec("marketray_redis_up", "gauge", "1 when Redis answered its last check, else 0"),
    _spec("marketray_redis_fallbacks_total", "counter",
          "operations served from the in-process fallback while Redis was away"),
)}

Key = tuple[str, tuple[str, ...]]
STALE_CHAIN_NS = 1_000_000_000


class Recorder:
    """Accumulates counter increments, gauge values and histogram observations.

    Safe to call from any thread; :meth:`drain` swaps the accumulators out under a lock.
    Unknown metric names raise ``KeyError`` (a typo must fail in tests, not vanish).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[Key, float] = defaultdict(float)
        self._gauges: dict[Key, float] = {}
        self._observations: defaultdict[Key, list[float]] = defaultdict(list)

    def inc(self, name: str, labels: tuple[str, ...] = (), value: float = 1.0) -> None:
        """Add ``value`` to counter ``name`` with label values in the catalogue's order."""
        with self._lock:
            self._counts[(name, labels)] += value

    def set(self, name: str, labels: tuple[str, ...] = (), value: float = 0.0) -> None:
        """Set gauge ``name``; only the last value of a period is exported."""
        with self._lock:
            self._gauges[(name, labels)] = value

    def observe(self, name: str, labels: tuple[str, ...] = (), value: float = 0.0) -> None:
        """Record one histogram observation."""
        with self._lock:
            self._observations[(name, labels)].append(value)

    def drain(self) -> tuple[dict[Key, float], dict[Key, float], dict[Key, list[float]]]:
        """Return and reset what was recorded since the last drain."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
            gauges, self._gauges = self._gauges, {}
            observations, self._observations = self._observations, defaultdict(list)
        return dict(counts), gauges, dict(observations)


class RaySink:
    """Hands drained batches to ``ray.util.metrics`` objects, created on first use."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        self._tag_cache: dict[Key, dict[str, str]] = {}

    def _metric(self, name: str) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            from ray.util import metrics  # deferred: unit tests use Recorder alone

            spec = CATALOGUE[name]
            if spec.kind == "counter":
                metric = metrics.Counter(name, description=spec.description,
                                         tag_keys=spec.tags)
            elif spec.kind == "gauge":
                metric = metrics.Gauge(name, description=spec.description, tag_keys=spec.tags)
            else:
                metric = metrics.Histogram(name, description=spec.description,
                                           boundaries=list(spec.buckets), tag_keys=spec.tags)
            self._metrics[name] = metric
        return metric

    def _tags(self, key: Key) -> dict[str, str]:
        tags = self._tag_cache.get(key)
        if tags is None:
            name, values = key
            spec = CATALOGUE[name]
            if len(values) != len(spec.tags):
                raise ValueError(f"{name} takes labels {spec.tags}, got {values}")
            tags = self._tag_cache[key] = dict(zip(spec.tags, values, strict=True))
        return tags

    def apply(self, counts: dict[Key, float], gauges: dict[Key, float],
              observations: dict[Key, list[float]]) -> None:
        """Record one drained batch."""
        for key, value in counts.items():
            self._metric(key[0]).inc(value, tags=self._tags(key))
        for key, value in gauges.items():
            self._metric(key[0]).set(value, tags=self._tags(key))
        for key, values in observations.items():
            metric, tags = self._metric(key[0]), self._tags(key)
            for value in values:
                metric.observe(value, tags=tags)


class _Exporter:
    """The per-process recorder and the daemon thread that flushes it to Ray."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.recorder = Recorder()
        self.sink = RaySink()
        self.period_s = period_s
        self.callbacks: list[Any] = []
        self._started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="marketray-metrics", daemon=True).start()

    def flush(self) -> None:
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception:  # noqa: BLE001, S112 - a collector's failure must not stop export
                continue
        self.sink.apply(*self.recorder.drain())

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001, S112 - keep exporting after one bad batch
                continue


_EXPORTER = _Exporter()


def recorder() -> Recorder:
    """The process's recorder; starts the export thread on first use."""
    _EXPORTER.start()
    return _EXPORTER.recorder


def on_flush(callback: Any) -> None:
    """Call ``callback()`` before each export (to sample gauges from counters kept elsewhere)."""
    _EXPORTER.callbacks.append(callback)
    _EXPORTER.start()


def flush_now() -> None:
    """Export what was recorded without waiting for the period (tests, shutdown)."""
    _EXPORTER.flush()


def record_ingest(recorder: Recorder, shard: str, result: dict[str, Any], option_ticks: int,
                  seconds: float) -> None:
    """Record one shard ingest call: its time, ticks applied and contracts repriced."""
    recorder.observe("marketray_shard_ingest_seconds", (shard,), seconds)
    if result["ticks"]:
        recorder.inc("marketray_shard_ticks_total", (shard, "stock"), result["ticks"])
    if option_ticks:
        recorder.inc("marketray_shard_ticks_total", (shard, "option"), option_ticks)
    if result["contracts_refreshed"]:
        recorder.inc("marketray_shard_chains_refreshed_total", (shard,),
                     result["contracts_refreshed"])


class FeedCollector:
    """Feed metrics sampled from the feed actor's status before each export.

    ``status()`` returns the feed runner's status plus ``shards`` (how many) and
    ``shards_waiting`` (those whose previous batch is still being applied).
    """

    def __init__(self, status: Any, recorder: Recorder, clock_ns: Any = None) -> None:
        import time

        self._status = status
        self._recorder = recorder
        self._clock_ns = clock_ns or time.time_ns
        self._last: dict[tuple[str, str], float] = {}

    def _delta(self, name: str, labels: tuple[str, ...], total: float) -> None:
        key = (name, "/".join(labels))
        before = self._last.get(key, 0.0)
        if total > before:
            self._recorder.inc(name, labels, total - before)
        self._last[key] = total

    def __call__(self) -> None:
        status = self._status()
        detail = status.get("detail") or {}
        for kind, counter in (("stock", "ticks"), ("option", "option_ticks"), ("bar", "bars")):
            self._delta("marketray_feed_messages_total", (kind,), status.get(counter, 0))
        last_ns = status.get("last_message_ns")
        if last_ns:
            self._recorder.set("marketray_feed_newest_tick_age_seconds", (),
                               max(0.0, (self._clock_ns() - last_ns) / 1e9))
        streams = detail.get("streams") or {}
        self._delta("marketray_feed_reconnects_total", (),
                    sum(s.get("reconnects", 0) for s in streams.values()))
        for reason, count in (detail.get("dropped_by_reason") or {}).items():
            self._delta("marketray_feed_malformed_total", (str(reason),), count)
        self._delta("marketray_feed_backfilled_bars_total", (),
                    detail.get("backfilled_bars", 0) + status.get("restored_bars", 0))
        waiting = set(status.get("shards_waiting") or ())
        for k in range(int(status.get("shards", 0))):
            self._recorder.set("marketray_feed_batches_waiting", (str(k),),
                               1.0 if k in waiting else 0.0)


class ShardMetrics:
    """A shard actor's metrics: per-ingest figures, and gauges sampled before export."""

    def __init__(self, shard: Any, label: str, recorder: Recorder) -> None:
        import time

        self.shard = shard
        self.label = label
        self.recorder = recorder
        self._clock_ns = time.time_ns
        recorder.inc("marketray_shard_starts_total", (label,))

    def ingested(self, result: dict[str, Any], option_ticks: int, seconds: float) -> None:
        """Record one ingest call (see :func:`record_ingest`)."""
        record_ingest(self.recorder, self.label, result, option_ticks, seconds)

    def __call__(self) -> None:
        chains = self.shard.chains
        newest = self.shard.now_ns()
        # Stale: quotes moved and the analytics are over a second older than the data.
        stale = int((chains.dirty & (chains.count > 0)
                     & (newest - chains.refreshed_ns > STALE_CHAIN_NS)).sum())
        self.recorder.set("marketray_shard_stale_chains", (self.label,), float(stale))
        if newest:
            self.recorder.set("marketray_shard_snapshot_age_seconds", (self.label,),
                              max(0.0, (self._clock_ns() - newest) / 1e9))


_PROCESS_LOCK = threading.Lock()
_PROCESS: Any = None


def process_usage() -> dict[str, Any]:
    """This process's CPU (percent of one core since the previous call) and memory."""
    import psutil

    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None or _PROCESS.pid != os.getpid():
            _PROCESS = psutil.Process()
            _PROCESS.cpu_percent(None)  # the first reading has no interval: prime it
        process = _PROCESS
        with process.oneshot():
            return {"pid": process.pid, "cpu_percent": round(process.cpu_percent(None), 1),
                    "rss_mb": round(process.memory_info().rss / 2**20, 1)}
