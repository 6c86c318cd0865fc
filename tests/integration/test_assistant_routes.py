"""The assistant router over HTTP and WebSocket, with fake market/knowledge and real generators."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from core.settings import Settings
from rag.generation import ExtractiveGenerator
from rag.grounding import extract_figures
from serve.models import GeneratorService
from tests.integration.assistant_fakes import SECRET, build_app

pytestmark = pytest.mark.integration


def _token(services: Any, role: str = "analyst", subject: str = "alice") -> str:
    return str(services.signer.issue(role, subject))


@pytest.fixture
def extractive_app() -> Any:
    service = GeneratorService(Settings(secret_key=SECRET),
                               generator=ExtractiveGenerator("disabled in test"))
    return build_app(service)


@pytest.fixture(scope="module")
def model_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module", params=[0, 8], ids=["generate", "batched"])
def local_service(model_data_dir: Path,
                  request: pytest.FixtureRequest) -> Iterator[GeneratorService]:
    service = GeneratorService(Settings(secret_key=SECRET, data_dir=model_data_dir),
                               max_concurrent=2, max_batch=request.param)
    assert service.status()["backend"] == "local", service.status()
    assert service.status()["batching"] == (request.param or "off")
    yield service
    service.close()


def _figures_in(text: str) -> list[str]:
    return [f.text for f in extract_figures(text)]


def test_chat_extractive_answer_carries_live_market_values(extractive_app: Any) -> None:
    app, services = extractive_app
    services.market.prices["AAPL"] = 201.47
    with TestClient(app) as client:
        response = client.post("/chat", json={"message": "What is $AAPL doing today?"},
                               headers={"Authorization": f"Bearer {_token(services)}"})
    assert response.status_code == 200, response.text
    body = response.json()
    message = body["message"]
    assert message["role"] == "assistant"
    assert "201.47" in message["content"]
    assert message["context"]["market"]["AAPL"]["price"] == 201.47
    assert message["context"]["grounding"]["ratio"] == 1.0
    assert message["context"]["answer"]["source"] == "composed"
    assert body["sources"] == []  # a price question needs no document
    assert body["session_id"]


def test_chat_needs_analyst_role(extractive_app: Any) -> None:
    app, services = extractive_app
    with TestClient(app) as client:
        viewer = client.post("/chat", json={"message": "hi"},
                             headers={"Authorization": f"Bearer {_token(services, 'viewer')}"})
        anonymous = client.post("/chat", json={"message": "hi"})
    assert viewer.status_code == 403
    assert anonymous.status_code == 401


def test_session_of_another_user_is_refused(extractive_app: Any) -> None:
    app, services = extractive_app
    alice = {"Authorization": f"Bearer {_token(services, subject='alice')}"}
    mallory = {"Authorization": f"Bearer {_token(services, subject='mallory')}"}
    with TestClient(app) as client:
        first = client.post("/chat", json={"message": "AAPL price?"}, headers=alice).json()
        stolen = client.post("/chat", json={"message": "what did I ask?",
                                            "session_id": first["session_id"]}, headers=mallory)
    assert stolen.status_code == 403
    assert stolen.json()["error"]["code"] == "session_forbidden"


def test_follow_up_keeps_the_symbol_from_history(extractive_app: Any) -> None:
    app, services = extractive_app
    headers = {"Authorization": f"Bearer {_token(services)}"}
    with TestClient(app) as client:
        first = client.post("/chat", json={"message": "How is NVDA trading?"}, headers=headers)
        session_id = first.json()["session_id"]
        follow = client.post("/chat", json={"message": "and its RSI?", "session_id": session_id},
                             headers=headers)
    body = follow.json()
    assert body["session_id"] == session_id
    assert body["message"]["context"]["symbols"] == ["NVDA"]
    assert "28.3" in body["message"]["content"]  # NVDA's RSI


def test_websocket_streams_tokens_then_done(extractive_app: Any) -> None:
    app, services = extractive_app
    with TestClient(app) as client, client.websocket_connect(
            f"/chat?token={_token(services)}") as ws:
        ws.send_json({"message": "AAPL options next week?", "context": {}})
        tokens: list[str] = []
        while True:
            frame = ws.receive_json()
            if frame["type"] == "token":
                tokens.append(frame["content"])
                continue
            assert frame["type"] == "done", frame
            break
    assert len(tokens) > 3
    assert "".join(tokens).strip() == frame["message"]["content"]
    assert frame["message"]["context"]["intent"] == "options"
    assert "0.82" in frame["message"]["content"]  # put/call ratio from the chain summary


def test_websocket_malformed_message_gets_error_frame_and_stays_open(extractive_app: Any) -> None:
    app, services = extractive_app
    with TestClient(app) as client, client.websocket_connect("/chat") as ws:
        ws.send_json({"action": "auth", "token": _token(services)})
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_text("{not json")
        assert ws.receive_json()["code"] == "invalid_json"
        ws.send_json({"context": {}})
        assert ws.receive_json()["code"] == "invalid_input"
        ws.send_json({"message": "MSFT price"})
        frames = [ws.receive_json()]
        while frames[-1]["type"] != "done":
            frames.append(ws.receive_json())
    assert "415.12" in frames[-1]["message"]["content"]


@pytest.mark.parametrize(("token_role", "code"), [(None, 4401), ("viewer", 4403)])
def test_websocket_refusal_close_codes(extractive_app: Any, token_role: str | None,
                                       code: int) -> None:
    app, services = extractive_app
    query = "" if token_role is None else f"?token={_token(services, token_role)}"
    with TestClient(app) as client, client.websocket_connect(f"/chat{query}") as ws:
        if token_role is None:
            ws.send_json({"message": "hi"})
        with pytest.raises(WebSocketDisconnect) as excinfo:
            ws.receive_json()
    assert excinfo.value.code == code


def test_analyze_returns_structure_and_narrative(extractive_app: Any) -> None:
    app, services = extractive_app
    with TestClient(app) as client:
        response = client.post("/analyze", json={"symbol": "aapl", "query": "momentum?"},
                               headers={"Authorization": f"Bearer {_token(services)}"})
        missing = client.post("/analyze", json={"symbol": "ZZZZ", "query": ""},
                              headers={"Authorization": f"Bearer {_token(services)}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == "AAPL"
    assert body["market"]["price"] == 189.37
    assert body["options"]["put_call"]["volume_ratio"] == 39_532 / 48_210
    assert isinstance(body["patterns"], list)
    assert body["answer"]
    assert body["grounding"]["ratio"] == 1.0
    assert "72.4" in body["answer"]  # RSI, asked for through "momentum"
    assert missing.status_code == 404


@pytest.mark.slow
def test_chat_with_default_model_streams_and_cites(local_service: GeneratorService) -> None:
    app, services = build_app(local_service, answer_mode="phrase")
    services.market.prices["AAPL"] = 187.06
    with TestClient(app) as client, client.websocket_connect(
            "/chat", headers={"Authorization": f"Bearer {_token(services)}"}) as ws:
        ws.send_json({"message": "What do AAPL's options say about next week?"})
        tokens: list[str] = []
        while (frame := ws.receive_json())["type"] == "token":
            tokens.append(frame["content"])
        ws.send_json({"message": "And what was the RSI?", "session_id": frame["session_id"]})
        while (follow := ws.receive_json())["type"] == "token":
            pass
    assert frame["type"] == "done", frame
    assert tokens  # sentences the gate accepted, then composed fills
    message = frame["message"]
    assert message["content"]
    assert message["context"]["market"]["AAPL"]["price"] == 187.06
    assert message["context"]["answer"]["source"] in {"model", "model+composed", "composed"}
    for n in message["context"]["citations"]:
        assert n in range(1, len(frame["sources"]) + 1)
    assert not re.search(r"\[(\d+)\]", message["content"]) or message["context"]["citations"]
    assert follow["type"] == "done"
    assert follow["session_id"] == frame["session_id"]
    assert follow["message"]["context"]["symbols"] == ["AAPL"]


class _EndlessGenerator:
    """Writes one good sentence, then a word every 10 ms until stopped; records the stop."""

    name = "endless"

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def stream(self, messages: Any, max_new_tokens: int = 256, *, evidence: Any = None,
               stop: threading.Event | None = None) -> Any:
        assert stop is not None
        yield "AAPL last traded at $189.37."
        try:
            while not stop.is_set():
                time.sleep(0.01)
                yield " word"
        finally:
            if stop.is_set():
                self.stopped.set()


def test_websocket_disconnect_cancels_generation() -> None:
    endless = _EndlessGenerator()
    service = GeneratorService(Settings(secret_key=SECRET), generator=endless)
    app, services = build_app(service, answer_mode="phrase")
    with TestClient(app) as client:
        with client.websocket_connect(f"/chat?token={_token(services)}") as ws:
            ws.send_json({"message": "AAPL?"})
            assert ws.receive_json()["type"] == "token"
        assert endless.stopped.wait(5.0)
        deadline = time.monotonic() + 5.0
        while service.active and time.monotonic() < deadline:
            time.sleep(0.05)
    assert service.active == 0


async def test_closing_the_stream_early_stops_the_local_model(local_service: GeneratorService
                                                               ) -> None:
    messages = [{"role": "user", "content": "Write a long essay about markets."}]
    stream = local_service.stream(messages, 400)
    started = time.perf_counter()
    first = await stream.__anext__()
    await stream.aclose()

    assert first
    assert local_service.active == 0
    # The scheduler drops the row at its next step boundary (one decode step away).
    def scheduler() -> dict[str, Any]:
        return dict(local_service.status().get("scheduler", {}))

    for _ in range(100):  # up to 5 s
        if scheduler().get("running", 0) == 0:
            break
        await asyncio.sleep(0.05)
    assert scheduler().get("running", 0) == 0
    steps = scheduler().get("steps", 0)
    await asyncio.sleep(0.5)
    assert scheduler().get("steps", 0) == steps  # no step ran for the closed stream
    assert time.perf_counter() - started < 20.0


def test_chat_is_rate_limited_per_subject(extractive_app: Any) -> None:
    app, services = extractive_app
    services.settings.rate_budget_analyst = 40  # two chats of 20 units (the pipeline's limit)
    alice = {"Authorization": f"Bearer {_token(services, subject='alice')}"}
    bob = {"Authorization": f"Bearer {_token(services, subject='bob')}"}
    with TestClient(app) as client:
        codes = [client.post("/chat", json={"message": "AAPL?"}, headers=alice).status_code
                 for _ in range(3)]
        limited = client.post("/chat", json={"message": "AAPL?"}, headers=alice)
        other = client.post("/chat", json={"message": "AAPL?"}, headers=bob)
    assert codes[:2] == [200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert other.status_code == 200
