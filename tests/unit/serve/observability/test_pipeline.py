"""The pipeline hooks: metrics recorded, JSON request log, audit policy (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.telemetry import Recorder
from serve.hooks import RequestRecord
from serve.observability.audit import AuditWriter, read_entries, verify_dir
from serve.observability.logs import RequestLog
from serve.observability.pipeline import ObservabilityHooks, audit_action

TOKEN = "eyJhbGciOiJIUzI1NiJ9.canary-token-value.sig"


def record(status: int = 200, *, route: str = "/market/{symbol}", method: str = "GET",
           kind: str = "http", subject: str | None = "alice", reason: str | None = None,
           request_id: str = "req-1") -> RequestRecord:
    return RequestRecord(request_id=request_id, kind=kind, method=method,  # type: ignore[arg-type]
                         route=route, client="10.0.0.7", user_agent="pytest", status=status,
                         latency_s=0.0042, started_at=1_764_000_000.0, subject=subject,
                         role="viewer" if subject else None, jti="j-1" if subject else None,
                         resource="AAPL", reason=reason, extra={"token": TOKEN})


@pytest.fixture
def hooks(tmp_path: Path) -> ObservabilityHooks:
    return ObservabilityHooks(Recorder(), audit=AuditWriter(tmp_path / "audit", "test"),
                              request_log=RequestLog(tmp_path / "requests.jsonl"))


def drive(hooks: ObservabilityHooks, records: list[RequestRecord]) -> None:
    for item in records:
        hooks.on_request_start(item.kind, item.route)
        hooks.on_request_end(item)
    hooks.flush()


def test_requests_counted_by_route_method_status(hooks: ObservabilityHooks) -> None:
    drive(hooks, [record(), record(), record(404), record(status=1000, kind="websocket",
                                                          route="/ws/market", method="WS")])

    counts, _, observations = hooks.recorder.drain()

    assert counts[("marketray_requests_total", ("http", "/market/{symbol}", "GET", "200"))] == 2
    assert counts[("marketray_requests_total", ("http", "/market/{symbol}", "GET", "404"))] == 1
    assert counts[("marketray_requests_total", ("websocket", "/ws/market", "WS", "1000"))] == 1
    # Latency only for HTTP; a WebSocket's lifetime is not a request latency.
    assert observations == {("marketray_request_duration_seconds", ("/market/{symbol}",)):
                            [0.0042, 0.0042, 0.0042]}


def test_in_flight_gauge_follows_start_and_end(hooks: ObservabilityHooks) -> None:
    hooks.on_request_start("http", "/a")
    hooks.on_request_start("http", "/a")
    hooks.on_request_start("websocket", "/")
    hooks.on_request_end(record())
    hooks.export_gauges()

    _, gauges, _ = hooks.recorder.drain()

    assert gauges[("marketray_requests_in_flight", ("http",))] == 1
    assert gauges[("marketray_requests_in_flight", ("websocket",))] == 1


def test_refusals_counted_by_reason(hooks: ObservabilityHooks) -> None:
    drive(hooks, [record(401, subject=None, reason="token_invalid"),
                  record(401, subject=None, reason="token_invalid"),
                  record(403, reason="role_forbidden"),
                  record(403, subject=None, reason="ip_denied"),
                  record(429, reason="rate_limited"),
                  record(4401, kind="websocket", route="/", method="WS", subject=None,
                         reason="token_expired")])

    counts, _, _ = hooks.recorder.drain()

    assert counts[("marketray_auth_failures_total", ("http", "token_invalid"))] == 2
    assert counts[("marketray_auth_failures_total", ("http", "role_forbidden"))] == 1
    assert counts[("marketray_auth_failures_total", ("http", "ip_denied"))] == 1
    assert counts[("marketray_auth_failures_total", ("websocket", "token_expired"))] == 1
    assert counts[("marketray_rate_limited_total", ("http", "/market/{symbol}"))] == 1
    assert ("marketray_auth_failures_total", ("http", "rate_limited")) not in counts


def test_request_log_json_lines_with_request_id_no_token(hooks: ObservabilityHooks,
                                                          tmp_path: Path) -> None:
    drive(hooks, [record(request_id="abc-123"), record(401, subject=None,
                                                       reason="token_invalid", request_id="r2")])

    text = (tmp_path / "requests.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]

    assert TOKEN not in text
    assert [line["request_id"] for line in lines] == ["abc-123", "r2"]
    assert lines[0] | {"time": None} == {
        "time": None, "level": "INFO", "event": "request", "request_id": "abc-123",
        "kind": "http", "method": "GET", "route": "/market/{symbol}", "status": 200,
        "latency_ms": 4.2, "client": "10.0.0.7", "subject": "alice", "role": "viewer",
        "resource": "AAPL"}
    assert lines[1]["reason"] == "token_invalid"


def test_audit_records_refusals_reads_and_writes(hooks: ObservabilityHooks,
                                                 tmp_path: Path) -> None:
    drive(hooks, [record(), record(401, subject=None, reason="token_missing"),
                  record(429, reason="rate_limited"), record(200, subject=None,
                                                             route="/health"),
                  record(201, method="POST", route="/documents")])
    hooks.on_security_event("token_revoked", by="admin", kind="jti", value="j-9")
    hooks.flush()

    entries = read_entries(tmp_path / "audit", limit=100)
    actions = sorted(e["action"] for e in entries)

    assert actions == ["auth.refused", "data.read", "data.write", "rate.limited",
                       "token.revoked"]
    read = next(e for e in entries if e["action"] == "data.read")
    assert (read["subject"], read["role"], read["jti"], read["client"], read["request_id"]) == (
        "alice", "viewer", "j-1", "10.0.0.7", "req-1")
    assert read["resource"] == {"route": "/market/{symbol}", "method": "GET", "target": "AAPL"}
    assert read["outcome"] == {"status": 200, "reason": None}
    assert TOKEN not in (tmp_path / "audit" / "test" / "000001.jsonl").read_text()
    assert verify_dir(tmp_path / "audit")[0].problem is None


@pytest.mark.parametrize(("item", "reads", "expected"), [
    (record(403, subject=None, reason="ip_denied"), True, "ip.refused"),
    (record(4401, kind="websocket", subject=None, reason="signature_invalid"), True,
     "signature.signature_invalid"),
    (record(4403, kind="websocket", reason="role_forbidden"), True, "auth.forbidden"),
    (record(1000, kind="websocket", method="WS"), True, "stream.session"),
    (record(), False, None),
    (record(method="DELETE", route="/documents/{document_id}"), False, "data.write"),
    (record(404, subject=None), True, None),
])
def test_audit_action_policy(item: RequestRecord, reads: bool, expected: str | None) -> None:
    assert audit_action(item, reads) == expected


def test_broken_recorder_never_raises_into_request(tmp_path: Path) -> None:
    class Broken(Recorder):
        def inc(self, name: str, labels: tuple[str, ...] = (), value: float = 1.0) -> None:
            raise RuntimeError("boom")

    hooks = ObservabilityHooks(Broken())
    hooks.on_request_start("http", "/a")

    hooks.on_request_end(record())  # must not raise


def test_websocket_connections_and_closes_by_stream(hooks: ObservabilityHooks) -> None:
    for route in ("/", "/ws/market", "/chat"):
        hooks.on_request_start("websocket", route)
    hooks.on_request_end(record(1000, kind="websocket", route="/", method="WS"))
    hooks.export_gauges()

    counts, gauges, _ = hooks.recorder.drain()

    assert gauges[("marketray_ws_connections", ("market",))] == 1
    assert gauges[("marketray_ws_connections", ("chat",))] == 1
    assert counts[("marketray_ws_closes_total", ("market", "1000"))] == 1


