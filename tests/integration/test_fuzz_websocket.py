"""WebSocket fuzz: generated frames to both streams, each answered by a frame or a documented close.

In-process (TestClient, stub services). Every frame is followed by a ping; whatever comes
back before the pong must be a frame of the contract, and a close must carry one of the
documented codes (1008, 1009, 4401), never 1011. After a close the fuzzer reconnects.
"""

from __future__ import annotations

import json
import random
import string
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from serve.security.signing import FrameSigner
from tests.integration.test_fuzz_api import _app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FRAMES_PER_STREAM = 600
DOCUMENTED_CLOSES = {1008, 1009, 4401}
FRAME_TYPES = {"error", "pong", "subscribed", "unsubscribed", "market", "options", "token",
               "done", "authenticated"}
ACTIONS = ["subscribe", "unsubscribe", "ping", "auth", "dance", "", None, 7]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1e308, -0.0, rng.randint(-10**6, 10**6)])
    if kind == 3:
        return rng.random() * 10 ** rng.randint(-5, 5)
    if kind == 4:
        return "".join(rng.choice(string.printable + "\u202e\x00é漢🙂") for _ in
                       range(rng.randrange(0, 40)))
    if kind == 5:
        return rng.choice(["AAPL", "MSFT", "aapl", "NOPE", "", "A" * 30, "AAPL\n"])
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    keys = ["action", "symbols", "channels", "token", "message", "context", "session_id",
            "ts", "nonce", "sig", "x"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _frame(rng: random.Random, signer: FrameSigner | None) -> tuple[str, Any]:
    """One generated frame: ("text", str) or ("bytes", bytes)."""
    kind = rng.randrange(10)
    if kind == 0:
        return "bytes", rng.randbytes(rng.randrange(1, 64))
    if kind == 1:
        return "text", "".join(rng.choice("{}[]\",:1a") for _ in range(rng.randrange(1, 30)))
    if kind == 2:
        return "text", json.dumps({"action": "ping", "pad": "x" * 70_000})  # over the limit
    if kind == 3:
        frame = {"action": rng.choice(ACTIONS), "symbols": _value(rng),
                 "channels": rng.choice([["market"], ["options"], ["x"], "market", None])}
    elif kind == 4:
        frame = {"message": _value(rng), "context": _value(rng),
                 "session_id": rng.choice([None, "s1", 5, "x" * 100])}
    elif kind == 5:
        frame = {"action": "subscribe", "symbols": ["AAPL"], "channels": ["market"]}
    elif kind == 6 and signer is not None:
        signed = json.loads(signer.sign({"action": "ping"}))
        signed[rng.choice(["sig", "ts", "nonce", "action"])] = _value(rng)
        return "text", json.dumps(signed)
    else:
        frame = _value(rng)
    if signer is not None and isinstance(frame, dict) and rng.random() < 0.7:
        return "text", signer.sign(frame)
    return "text", json.dumps(frame)


class Fuzzer:
    def __init__(self, client: TestClient, path: str, token: str,
                 signer: FrameSigner | None) -> None:
        self.client, self.path, self.token, self.signer = client, path, token, signer
        self.closes: dict[int, int] = {}
        self.replies: dict[str, int] = {}
        self.sent = 0

    def run(self, rng: random.Random, frames: int) -> None:
        while self.sent < frames:
            with self.client.websocket_connect(f"{self.path}?token={self.token}") as ws:
                if self.signer is not None:
                    self.signer.expected_seq = 1  # the server counts per connection
                try:
                    while self.sent < frames:
                        kind, payload = _frame(rng, self.signer)
                        self.sent += 1
                        (ws.send_bytes if kind == "bytes" else ws.send_text)(payload)
                        ping = {"action": "ping"}
                        ws.send_text(self.signer.sign(ping) if self.signer else json.dumps(ping))
                        self._read_until_pong(ws)
                except WebSocketDisconnect as closed:
                    self.closes[closed.code] = self.closes.get(closed.code, 0) + 1

    def _read_until_pong(self, ws: Any) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = orjson.loads(ws.receive_text())
            if self.signer is not None:
                reply = self.signer.open(orjson.dumps(reply))
            kind = reply.get("type")
            assert kind in FRAME_TYPES, reply
            if kind == "error":
                assert isinstance(reply.get("code"), str)
                assert isinstance(reply.get("message"), str)
            self.replies[kind] = self.replies.get(kind, 0) + 1
            if kind == "pong":
                return
        raise AssertionError("no pong within 10 s")


@pytest.fixture(scope="module")
def fuzz_client():
    app, _ = _app()
    with TestClient(app) as client:
        yield client, app


@pytest.mark.parametrize("path", ["/ws/market", "/chat"])
@pytest.mark.parametrize("signing", [False, True], ids=["plain", "signed"])
def test_generated_frames_get_an_error_frame_or_a_documented_close(fuzz_client, path, signing):
    # Arrange
    client, app = fuzz_client
    services = app.app.state.services
    services.settings = services.settings.model_copy(update={
        "ws_messages_per_s": 10_000.0, "ws_message_burst": 10_000,
        "ws_max_connections_per_subject": 1_000})
    services.security = None  # rebuilt from the settings above
    token = services.signer.issue("admin", f"fuzz-{signing}", signing=signing)
    signer = FrameSigner(services.signer.frame_key(services.signer.verify(token))) \
        if signing else None
    fuzzer = Fuzzer(client, path, token, signer)

    # Act
    fuzzer.run(random.Random(f"{path}-{signing}"), FRAMES_PER_STREAM // 2)

    # Assert: every frame was answered; the service still answers
    assert fuzzer.sent >= FRAMES_PER_STREAM // 2
    assert set(fuzzer.closes) <= DOCUMENTED_CLOSES, fuzzer.closes  # never 1011
    assert fuzzer.replies.get("error", 0) > 0
    assert fuzzer.closes.get(1009, 0) > 0  # the oversized frames
    assert client.get("/health").status_code == 200
