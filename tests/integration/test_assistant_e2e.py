"""End to end: `marketray serve` with the default model, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
import websockets

from tests.integration.harness import start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def svc() -> Any:
    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT"}, timeout_s=600) as running:
        _wait_for_generator(running, timeout_s=300)
        yield running


def _wait_for_generator(svc: Any, timeout_s: float) -> None:
    """Fail fast, with a reason, when the Generator replica never starts."""
    deadline = time.monotonic() + timeout_s
    checks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{svc.base_url}/health", timeout=30)
        checks = response.json().get("checks", {})
        if checks.get("generator", {}).get("backend"):
            return
        time.sleep(2.0)
    pytest.fail("the Generator deployment did not come up (are there enough CPUs for the "
                f"model replicas' num_cpus?); health checks: {checks}\n{svc.log_tail()}")


async def _ask(ws_url: str, token: str, message: str, session_id: str | None = None
               ) -> tuple[list[str], dict[str, Any]]:
    async with websockets.connect(f"{ws_url}/chat?token={token}", max_size=None) as ws:
        payload: dict[str, Any] = {"message": message, "context": {}}
        if session_id:
            payload["session_id"] = session_id
        await ws.send(json.dumps(payload))
        tokens: list[str] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if frame["type"] == "token":
                tokens.append(frame["content"])
            else:
                return tokens, frame


def _snapshot(svc: Any) -> dict[str, Any]:
    response = httpx.get(f"{svc.base_url}/market/AAPL", headers=svc.auth("viewer"), timeout=30)
    response.raise_for_status()
    return dict(response.json())


def test_chat_websocket_streams_grounded_answer_with_live_values(svc: Any) -> None:
    token = svc.token("analyst", "alice")
    before = _snapshot(svc)

    tokens, done = asyncio.run(_ask(svc.ws_url, token,
                                    "What do AAPL's options say about next week?"))
    after = _snapshot(svc)

    assert done["type"] == "done", done
    assert len(tokens) >= 3
    message = done["message"]
    assert message["role"] == "assistant"
    assert message["content"]
    used = message["context"]["market"]["AAPL"]
    stamp = datetime.fromisoformat(used["timestamp"])
    assert datetime.fromisoformat(before["timestamp"]) <= stamp
    assert stamp <= datetime.fromisoformat(after["timestamp"])
    assert used["price"] > 0
    assert abs(used["price"] - after["price"]) / after["price"] < 0.05
    for n in message["context"]["citations"]:
        assert n in range(1, len(done["sources"]) + 1)
    for source in done["sources"]:
        assert source["document_id"]
        assert source["page"] >= 1

    follow_tokens, follow = asyncio.run(_ask(svc.ws_url, token, "And what is its RSI?",
                                             done["session_id"]))
    assert follow["type"] == "done", follow
    assert follow["session_id"] == done["session_id"]
    assert follow["message"]["context"]["symbols"] == ["AAPL"]


def test_rest_chat_session_is_private_to_its_user(svc: Any) -> None:
    alice = svc.auth("analyst", "alice")
    first = httpx.post(f"{svc.base_url}/chat", json={"message": "How is MSFT trading?"},
                       headers=alice, timeout=300)
    assert first.status_code == 200, first.text
    session_id = first.json()["session_id"]

    stolen = httpx.post(f"{svc.base_url}/chat",
                        json={"message": "what did I ask?", "session_id": session_id},
                        headers=svc.auth("analyst", "mallory"), timeout=60)

    assert stolen.status_code == 403
    assert stolen.json()["error"]["code"] == "session_forbidden"


def test_analyze_returns_contract_shape(svc: Any) -> None:
    response = httpx.post(f"{svc.base_url}/analyze",
                          json={"symbol": "AAPL", "query": "Is AAPL overbought? Trend?"},
                          headers=svc.auth("analyst"), timeout=300)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"symbol", "query", "market", "options", "patterns", "answer", "sources"}
    assert body["market"]["symbol"] == "AAPL"
    rsi = body["market"]["indicators"]["rsi_14"]
    assert f"RSI(14) is {rsi:.1f}" in body["answer"]  # the response's own figure
    assert body["context"]["answer"]["source"] == "composed"  # default: the 135M model


def test_health_reports_the_loaded_generator(svc: Any) -> None:
    checks = httpx.get(f"{svc.base_url}/health", timeout=30).json()["checks"]

    assert checks["generator"]["backend"] == "local"
    assert checks["generator"]["status"] == "ok"
