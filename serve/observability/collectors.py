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
