"""Assistant routes: POST /analyze, POST /chat and the chat WebSocket /chat (CONTRACT §5-6).

The WebSocket sends ``{"type": "token", "content"}`` frames as the model generates, then
``{"type": "done", "message", "sources", "session_id"}``. A malformed message gets an
``{"type": "error"}`` frame and the connection stays open; a client that disconnects
cancels its generation. Rate limits are the request pipeline's (serve/security): each
request, and each chat WebSocket message, costs its route's units.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import MarketrayError, RateLimited
from core.models import ChatMessage, MarketData, Source
from serve.assistant import Assistant
from serve.auth import Principal, accept_authenticated
from serve.deps import CurrentPrincipal, Services, ServicesDep, services_of
from serve.security.policy import errors, secured

log = logging.getLogger("marketray.chat")
router = APIRouter(tags=["assistant"])

MAX_MESSAGE_CHARS = 4_000


class AnalyzeRequest(BaseModel):
    """Body of POST /analyze."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(min_length=1, max_length=12)
    query: str = Field("", max_length=MAX_MESSAGE_CHARS)


class AnalyzeResponse(BaseModel):
    """CONTRACT §5: structured analysis plus a short narrative answer with sources."""

    symbol: str
    query: str
    market: MarketData
    options: dict[str, Any]
    patterns: list[dict[str, Any]]
    analysis: dict[str, Any] = Field(default_factory=dict)
    answer: str
    sources: list[Source]
    citations: list[int] = Field(default_factory=list)
    grounding: dict[str, Any] = Field(default_factory=dict)
    intent: str = "general"
    context: dict[str, Any] = Field(default_factory=dict)


class ChatRequest(BaseModel):
    """Body of POST /chat and of each chat WebSocket message."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    context: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(None, max_length=64)


class ChatResponse(BaseModel):
    """POST /chat's answer."""

    message: ChatMessage
    sources: list[Source]
    session_id: str


def assistant_for(services: Services) -> Assistant:
    """Return the replica's Assistant (built on first use)."""
    assistant: Assistant | None = getattr(services, "assistant", None)
    if assistant is None:
        assistant = Assistant(services)
        services.assistant = assistant  # type: ignore[attr-defined]
    return assistant


@router.post("/analyze", response_model=AnalyzeResponse,
             responses=errors(401, 403, 404, 413, 422, 429, 503))
@secured("analyst", cost=20)
async def analyze(
    body: AnalyzeRequest,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Indicators, patterns, volume and option-chain analytics plus a cited narrative."""
    return await assistant_for(services).analyze(body.symbol.strip().upper(), body.query)


@router.post("/chat", response_model=ChatResponse,
             responses=errors(401, 403, 404, 413, 422, 429, 503))
@secured("analyst", cost=20)
async def chat(
    body: ChatRequest,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Answer one message (whole answer at once); pass ``session_id`` back for follow-ups."""
    done: dict[str, Any] | None = None
    async for event in assistant_for(services).chat(body.message, body.context, body.session_id,
                                                   principal):
        if event["type"] == "done":
            done = event
    assert done is not None  # chat() always ends with a done event
    return {"message": done["message"], "sources": done["sources"],
            "session_id": done["session_id"]}


def _frame(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload).decode()


async def _error(websocket: WebSocket, code: str, message: str, **extra: Any) -> None:
    await websocket.send_text(_frame({"type": "error", "code": code, "message": message,
                                      **extra}))


async def _answer(websocket: WebSocket, services: Services, principal: Principal,
                  request: ChatRequest) -> None:
    try:
        async for event in assistant_for(services).chat(
                request.message, request.context, request.session_id, principal):
            await websocket.send_text(_frame(event))
    except RateLimited as exc:
        await _error(websocket, exc.code, exc.message, retry_after=round(exc.retry_after, 2))
    except MarketrayError as exc:
        await _error(websocket, exc.code, exc.message)
    except (WebSocketDisconnect, asyncio.CancelledError):
        raise
    except Exception:  # never a stack trace to the client; the connection stays open
        log.exception("chat failed")
        await _error(websocket, "internal_error", "the answer failed; see server log")


@secured("analyst", cost=1, message_cost=20)
async def chat_stream(websocket: WebSocket) -> None:
    """Chat WebSocket: one answer at a time; messages sent meanwhile wait their turn."""
    services = services_of(websocket)
    principal = await accept_authenticated(websocket, services.signer)
    if principal is None:
        return
    if not principal.allows("analyst"):
        await websocket.close(code=4403, reason="chat needs the analyst role")
        return
    inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def read() -> None:
        try:
            while True:
                inbox.put_nowait(await websocket.receive_text())
        except (WebSocketDisconnect, RuntimeError):
            inbox.put_nowait(None)

    reader = asyncio.create_task(read())
    answering: asyncio.Task[None] | None = None
    try:
        while True:
            raw = await inbox.get()
            if raw is None:
                return
            request = await _parse(websocket, raw)
            if request is None:
                continue
            answering = asyncio.create_task(_answer(websocket, services, principal, request))
            await asyncio.wait({answering, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not answering.done():  # the client went away: stop generating
                return
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                answering.result()
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        # Also reached when the server cancels this handler: never leave a generation behind.
        reader.cancel()
        if answering is not None and not answering.done():
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await answering


async def _parse(websocket: WebSocket, raw: str) -> ChatRequest | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        await _error(websocket, "invalid_json", "message is not JSON")
        return None
    if isinstance(data, dict) and data.get("action") == "auth":
        await _error(websocket, "already_authenticated", "connection is already authenticated")
        return None
    if isinstance(data, dict) and data.get("action") == "ping":
        await websocket.send_text(_frame({"type": "pong"}))
        return None
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        await _error(websocket, "invalid_input",
                     f"{where}: {first.get('msg', 'invalid')}" if where else "invalid message")
        return None


router.add_api_websocket_route("/chat", chat_stream)
