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
    """Frames sent and conflated (as counter increments), clients behind, outbox depth.

    Per-client counters are read at each export: frames of a client that disconnects
    between two exports after its last sample are not counted (at most one period's).
    """

    def __init__(self, hub: Any, recorder: Recorder) -> None:
        self._hub = weakref.ref(hub)
        self._recorder = recorder
        self._seen: weakref.WeakKeyDictionary[Any, tuple[int, int]] = (
            weakref.WeakKeyDictionary())

    def __call__(self) -> None:
        hub = self._hub()
        if hub is None:
            return
        sent = conflated = behind = outbox = 0
        for client in list(hub.subscribers):
            last_sent, last_conflated = self._seen.get(client, (0, 0))
            sent += client.sent - last_sent
            conflated += client.conflated - last_conflated
            self._seen[client] = (client.sent, client.conflated)
            unsent = client.unsent
            outbox += unsent
            behind += unsent > 0
        labels = (MARKET_STREAM,)
        if sent:
            self._recorder.inc("marketray_ws_frames_sent_total", labels, sent)
        if conflated:
            self._recorder.inc("marketray_ws_frames_conflated_total", labels, conflated)
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
