"""The request pipeline's hooks: metrics, the request log and the audit log per request.

The request path only appends to in-memory buffers (a few dictionary operations); one
daemon thread per process turns them into Ray metrics, request-log lines and audit
entries once a period (:data:`FLUSH_PERIOD_S`).
"""

from __future__ import annotations

import logging
from typing import Any

from actors.telemetry import Recorder
from serve.hooks import RequestKind, RequestRecord
from serve.observability.audit import AuditWriter
from serve.observability.logs import RequestLog, event

log = logging.getLogger("marketray.observability")
FLUSH_PERIOD_S = 0.5
# Refusal reasons counted as authentication/authorisation failures (rate limits apart).
AUTH_STATUSES = frozenset({401, 403})
RATE_LIMITED = "rate_limited"
WS_AUTH_CLOSES = frozenset({4401, 4403})
# WebSocket route templates by stream (the metrics' ``stream`` label).
STREAMS = {"/": "market", "/ws/market": "market", "/chat": "chat"}


def audit_action(record: RequestRecord, audit_reads: bool) -> str | None:
    """The audit action for a finished request, or ``None`` when it is not audited.

    Refusals (401/403/429, address refusals, signature and replay failures) always are;
    authenticated requests are data reads (``GET``, WebSocket sessions) or writes.
    """
    status, reason = record.status, record.reason
    if reason == "ip_denied":
        return "ip.refused"
    if reason in ("signature_invalid", "replay"):
        return f"signature.{reason}"
    if status == 429 or reason == RATE_LIMITED:
        return "rate.limited"
    if status in AUTH_STATUSES or status in WS_AUTH_CLOSES:
        return "auth.refused" if status in (401, 4401) else "auth.forbidden"
    if record.subject is None:
        return None
    if record.kind == "websocket":
        return "stream.session" if audit_reads else None
    if record.method in ("GET", "HEAD"):
        return "data.read" if audit_reads else None
    return "data.write"


class ObservabilityHooks:
    """Implements :class:`serve.hooks.PipelineHooks` plus ``on_security_event``."""

    def __init__(self, recorder: Recorder, *, audit: AuditWriter | None = None,
                 request_log: RequestLog | None = None, audit_reads: bool = True) -> None:
        self.recorder = recorder
        self.audit = audit
        self.request_log = request_log
        self.audit_reads = audit_reads
        self.in_flight: dict[str, int] = {"http": 0, "websocket": 0}
        self.ws_open: dict[str, int] = {}  # stream -> open connections
        self._statuses: dict[int, str] = {}

    def on_request_start(self, kind: RequestKind, route: str) -> None:
        self.in_flight[kind] += 1
        if kind == "websocket":
            stream = STREAMS.get(route, route)
            self.ws_open[stream] = self.ws_open.get(stream, 0) + 1

    def observe_services(self, services: Any) -> None:
        """Export the replica's market hub and cache state before each metrics export."""
        from actors import telemetry
        from serve.observability.collectors import CacheCollector, HubCollector

        if services.hub is not None:
            telemetry.on_flush(HubCollector(services.hub, self.recorder))
        if services.cache is not None:
            telemetry.on_flush(CacheCollector(services.cache, self.recorder))

    def on_request_end(self, record: RequestRecord) -> None:
        try:
            self._record(record)
        except Exception:  # noqa: BLE001 - observing must never fail a request
            log.exception("observing a request failed", extra={"event": "observability.error"})

    def _record(self, record: RequestRecord) -> None:
        kind, route, status = record.kind, record.route, record.status
        self.in_flight[kind] -= 1
        status_text = self._statuses.get(status)
        if status_text is None:
            status_text = self._statuses[status] = str(status)
        recorder = self.recorder
        recorder.inc("marketray_requests_total", (kind, route, record.method, status_text))
        if kind == "http":
            recorder.observe("marketray_request_duration_seconds", (route,), record.latency_s)
        else:
            stream = STREAMS.get(route, route)
            self.ws_open[stream] = self.ws_open.get(stream, 1) - 1
            recorder.inc("marketray_ws_closes_total", (stream, status_text))
        if status == 429 or record.reason == RATE_LIMITED:
            recorder.inc("marketray_rate_limited_total", (kind, route))
        elif status in AUTH_STATUSES or status in WS_AUTH_CLOSES or record.reason in (
                "ip_denied", "signature_invalid", "replay"):
            recorder.inc("marketray_auth_failures_total", (kind, record.reason or status_text))
        if self.request_log is not None:
            self.request_log.append(record)
        if self.audit is not None:
            action = audit_action(record, self.audit_reads)
            if action is not None:
                self.audit.append_trusted({
                    "action": action, "request_id": record.request_id,
                    "subject": record.subject, "role": record.role, "jti": record.jti,
                    "client": record.client, "user_agent": record.user_agent[:256],
                    "resource": {"route": route, "method": record.method,
                                 "target": record.resource},
                    "outcome": {"status": status, "reason": record.reason}})

    def on_security_event(self, name: str, **fields: Any) -> None:
        """Audit and log a security or data event (``token.issued``, ``index.published``).

        ``token_revoked`` style names become ``token.revoked`` (filters match prefixes).
        """
        if "." not in name:
            name = name.replace("_", ".", 1)
        if self.audit is not None:
            self.audit.append(name, **fields)
        event(log, name, **{k: v for k, v in fields.items() if k != "settings"})

    def export_gauges(self) -> None:
        """Hand the in-flight counts to the recorder (called before each export)."""
        for kind, value in self.in_flight.items():
            self.recorder.set("marketray_requests_in_flight", (kind,), float(value))
        for stream, value in list(self.ws_open.items()):
            self.recorder.set("marketray_ws_connections", (stream,), float(value))

    def flush(self) -> None:
        """Write the queued request-log lines and audit entries."""
        if self.request_log is not None:
            self.request_log.flush()
        if self.audit is not None:
            written_before, errors_before = self.audit.written, self.audit.errors
            self.audit.flush()
            if self.audit.written > written_before:
                self.recorder.inc("marketray_audit_entries_total", (),
                                  self.audit.written - written_before)
            if self.audit.errors > errors_before:
                self.recorder.inc("marketray_audit_errors_total", (),
                                  self.audit.errors - errors_before)
