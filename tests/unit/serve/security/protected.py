"""An app behind the request pipeline with fake services, recorded hooks and a fake clock."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from serve.app import create_api
from serve.deps import protect
from serve.hooks import RequestRecord
from tests.unit.serve.fakes import make_services


class RecordingHooks:
    """Keep every hook call for the test to read."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.ended: list[RequestRecord] = []
        self.events: list[tuple[str, dict]] = []

    def on_request_start(self, kind, route):
        self.started.append((kind, route))

    def on_request_end(self, record):
        self.ended.append(record)

    def on_security_event(self, name, **fields):
        self.events.append((name, fields))


class FakeClock:
    """A clock the test moves by setting ``now`` (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def protected_client(peer=("203.0.113.5", 40000), **settings):
    """Return a TestClient through the pipeline and its services; ``settings`` override."""
    api = create_api()
    services = make_services()
    services.settings = services.settings.model_copy(update=settings)
    services.hooks = RecordingHooks()
    services.cache._now = FakeClock()  # the rate limiter's clock
    api.state.services = services
    return TestClient(protect(api), client=peer), services


def read_until_closed(ws):
    """Every frame until the server closes; return them and the close code."""
    frames = []
    try:
        while True:
            frames.append(orjson.loads(ws.receive_text()))
    except WebSocketDisconnect as closed:
        return frames, closed.code


def auth_header(services, role="viewer", subject="tester", **kwargs):
    """Return a bearer header for a fresh token."""
    return {"Authorization": f"Bearer {services.signer.issue(role, subject, **kwargs)}"}


def market_socket(client, services, **kwargs):
    """Open /ws/market with a fresh viewer token in the query."""
    return client.websocket_connect(f"/ws/market?token={services.signer.issue('viewer', **kwargs)}")
