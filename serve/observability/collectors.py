"""Gauges and counters sampled from a replica's objects before each metrics export.

The market hub and the cache keep their own counters for ``/health``; these collectors
turn them into metrics once a period instead of adding calls to the hot paths.
"""

from __future__ import annotations

import weakref
from typing import Any

from actors.telemetry import Recorder

MARKET_STREAM = "market"


class HubCollector:
    """Frames sent and conflated (as counter increments), clients behind, outbox depth."""

    def __init__(self, hub: Any, recorder: Recorder) -> None:
        self._hub = weakref.ref(hub)
        self._recorder = recorder
        self._sent = self._conflated = 0

    def __call__(self) -> None:
        hub = self._hub()
        if hub is None:
            return
        sent, conflated = hub.departed_sent, hub.departed_conflated
        behind = outbox = 0
        for client in list(hub.subscribers):
            sent += client.sent
            conflated += client.conflated
            unsent = client.unsent
            outbox += unsent
            behind += unsent > 0
        labels = (MARKET_STREAM,)
        if sent > self._sent:
            self._recorder.inc("marketray_ws_frames_sent_total", labels, sent - self._sent)
        if conflated > self._conflated:
            self._recorder.inc("marketray_ws_frames_conflated_total", labels,
                               conflated - self._conflated)
        self._sent, self._conflated = sent, conflated
        self._recorder.set("marketray_ws_clients_behind", labels, behind)
        self._recorder.set("marketray_ws_outbox_frames", labels, outbox)


class CacheCollector:
    """``redis_up`` and fail-overs of a Redis cache (nothing for the in-process cache)."""

    def __init__(self, cache: Any, recorder: Recorder) -> None:
        self._cache = weakref.ref(cache)
        self._recorder = recorder
        self._failovers = 0

    def __call__(self) -> None:
        cache = self._cache()
        if cache is None or not hasattr(cache, "failovers"):
            return
        available = bool(getattr(cache, "_available", True))  # the cache's own view
        self._recorder.set("marketray_redis_up", (), 1.0 if available else 0.0)
        failovers = int(cache.failovers)
        if failovers > self._failovers:
            self._recorder.inc("marketray_redis_fallbacks_total", (),
                               failovers - self._failovers)
        self._failovers = failovers


def _version_number(version: str | None) -> float | None:
    digits = "".join(c for c in (version or "") if c.isdigit())
    return float(digits) if digits else None


class KnowledgeMetrics:
    """The knowledge base's metrics; an index version change is audited as published."""

    def __init__(self, service: Any, recorder: Recorder, hooks: Any = None) -> None:
        self._service = weakref.ref(service)
        self.recorder = recorder
        self.hooks = hooks
        self._version: str | None = None

    def searched(self, seconds: float) -> None:
        """Record one search's latency."""
        self.recorder.observe("marketray_kb_search_seconds", (), seconds)

    def ingested(self, record: dict[str, Any]) -> None:
        """Record one processed upload (``indexed``, ``duplicate`` or ``failed``)."""
        status = record.get("status")
        if status == "indexed":
            self.recorder.inc("marketray_kb_ingested_total", ("documents",))
            self.recorder.inc("marketray_kb_ingested_total", ("pages",), record.get("pages") or 0)
            self.recorder.inc("marketray_kb_ingested_total", ("chunks",),
                              record.get("chunks") or 0)
        elif status in ("failed", "duplicate"):
            reason = "duplicate" if status == "duplicate" else _reason_code(record.get("reason"))
            self.recorder.inc("marketray_kb_skipped_total", (reason,))

    def __call__(self) -> None:
        service = self._service()
        if service is None:
            return
        status = service.status()
        number = _version_number(status.get("version"))
        if number is not None:
            self.recorder.set("marketray_kb_index_version", (), number)
        self.recorder.set("marketray_kb_index_chunks", (), float(status.get("chunks", 0)))
        version = status.get("version")
        if version is not None and version != self._version:
            if self._version is not None and self.hooks is not None:
                self.hooks.on_security_event("index.published", version=version,
                                             chunks=status.get("chunks"),
                                             documents=status.get("documents"))
            self._version = version


def _reason_code(reason: Any) -> str:
    """A bounded label from a skip reason: its first word, snake_case, at most 32 chars."""
    text = str(reason or "unknown").split(":")[0].strip().lower()
    return "".join(c if c.isalnum() else "_" for c in text)[:32] or "unknown"


class GeneratorMetrics:
    """Time to first token, tokens, queue length and active sequences of a generator."""

    def __init__(self, service: Any, recorder: Recorder) -> None:
        self._service = weakref.ref(service)
        self.recorder = recorder
        self.in_progress = 0  # stream calls started and not finished (queued or active)

    def first_token(self, seconds: float) -> None:
        self.recorder.observe("marketray_llm_time_to_first_token_seconds", (), seconds)

    def tokens(self, count: int) -> None:
        if count:
            self.recorder.inc("marketray_llm_tokens_total", (), count)

    def __call__(self) -> None:
        service = self._service()
        if service is None:
            return
        active = int(service.active)
        self.recorder.set("marketray_llm_active_sequences", (), float(active))
        self.recorder.set("marketray_llm_queue_length", (), float(max(0, self.in_progress
                                                                       - active)))
