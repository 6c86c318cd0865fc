"""The request pipeline's observation points: what every HTTP request and WebSocket reports.

The pipeline (security checks, request id) calls these hooks; observability (metrics, JSON
request logs, audit) implements them. Neither side imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

RequestKind = Literal["http", "websocket"]


@dataclass(slots=True)
class RequestRecord:
    """One finished HTTP request or WebSocket connection, as the pipeline saw it."""

    request_id: str
    kind: RequestKind
    method: str  # "GET", "POST", ... or "WS"
    route: str  # route template ("/market/{symbol}"), or "unmatched"; never a raw path
    client: str  # client address after trusted-proxy resolution
    user_agent: str
    status: int  # HTTP status, or the WebSocket close code
    latency_s: float  # request time, or the connection's lifetime
    started_at: float  # Unix seconds
    subject: str | None = None
    role: str | None = None
    jti: str | None = None
    resource: str | None = None  # symbol or document id when the route names one
    reason: str | None = None  # snake_case refusal reason: ip_denied, token_invalid, ...
    extra: dict[str, object] = field(default_factory=dict)


class PipelineHooks(Protocol):
    """What the request pipeline reports; implementations must not raise or block."""

    def on_request_start(self, kind: RequestKind, route: str) -> None:
        """A request or connection entered the pipeline (in-flight gauges)."""

    def on_request_end(self, record: RequestRecord) -> None:
        """A request finished or a connection closed (metrics, request log, audit)."""


class NoHooks:
    """Hooks that observe nothing (tests, benchmarks' 'off' arm)."""

    def on_request_start(self, kind: RequestKind, route: str) -> None:
        return None

    def on_request_end(self, record: RequestRecord) -> None:
        return None
