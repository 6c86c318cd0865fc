"""The guard on an open WebSocket: frame size, binary frames, floods, message cost, signing."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from serve.security.policy import secured
from serve.security.signing import FrameSigner
from tests.unit.serve.security.protected import market_socket, protected_client, read_until_closed


def test_frame_over_the_limit_closes_1009():
    client, services = protected_client(ws_max_frame_bytes=1024)
    with client, market_socket(client, services) as ws:
        ws.send_text(json.dumps({"action": "ping", "pad": "x" * 2000}))
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 1009


def test_flood_gets_error_frames_then_1008():
    client, services = protected_client(ws_messages_per_s=1.0, ws_message_burst=3)
    with client, market_socket(client, services) as ws:
        for _ in range(12):
            ws.send_text('{"action": "ping"}')
        frames, code = read_until_closed(ws)
    codes = [f.get("code") for f in frames]
    assert codes.count(None) == 3  # the burst's pongs
    assert "rate_limited" in codes
    assert code == 1008


def test_binary_frame_gets_an_error_frame_and_the_connection_stays():
    client, services = protected_client()
    with client, market_socket(client, services) as ws:
        ws.send_bytes(b"\x00\xff")
        error = orjson.loads(ws.receive_text())
        ws.send_text('{"action": "ping"}')
        pong = orjson.loads(ws.receive_text())
    assert error["code"] == "binary_not_supported"
    assert pong["type"] == "pong"


def test_costly_websocket_messages_are_charged_each():
    # A stand-in route with a per-message cost, as the chat stream has.
    client, services = protected_client(rate_budget_viewer=3)
    api = client.app.app

    @secured("viewer", cost=1, message_cost=1)
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_text(await websocket.receive_text())

    api.add_api_websocket_route("/echo", echo)
    with client, client.websocket_connect(f"/echo?token={services.signer.issue('viewer')}") as ws:
        replies = []
        for _ in range(3):
            ws.send_text('{"n": 1}')
            replies.append(orjson.loads(ws.receive_text()))
    assert replies[:2] == [{"n": 1}, {"n": 1}]  # connect 1 + two messages = the budget
    assert replies[2]["code"] == "rate_limited"


def test_signed_frames_good_tampered_stale_and_replayed():
    client, services = protected_client()
    token = services.signer.issue("viewer", "hal", signing=True)
    signer = FrameSigner(services.signer.frame_key(services.signer.verify(token)))
    with client, client.websocket_connect(f"/ws/market?token={token}") as ws:
        good = signer.sign({"action": "ping"})
        ws.send_text(good)
        pong = signer.open(ws.receive_text())
        tampered = json.loads(signer.sign({"action": "ping"}))
        tampered["action"] = "subscribe"
        ws.send_text(json.dumps(tampered))
        tampered_reply = signer.open(ws.receive_text())
        ws.send_text(signer.sign({"action": "ping"}, now_ms=int((time.time() - 60) * 1000)))
        stale_reply = signer.open(ws.receive_text())
        ws.send_text(good)
        replay_reply = signer.open(ws.receive_text())
        ws.send_text('{"action": "ping"}')
        unsigned_reply = signer.open(ws.receive_text())
        ws.send_text(good)
        signer.open(ws.receive_text())
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()  # the fifth failure closes
    assert pong["type"] == "pong"
    assert tampered_reply["code"] == "signature_invalid"
    assert stale_reply["code"] == "stale"
    assert replay_reply["code"] == "replay"
    assert unsigned_reply["code"] == "signature_missing"
    assert info.value.code == 4401
    record = services.hooks.ended[-1]
    assert record.extra["refused_frames"]["replay"] == 2
    assert {name for name, _ in services.hooks.events} >= {"signature_invalid", "replay"}
