"""One authenticated WebSocket between the client and its handler: limits, signing, expiry.

The pipeline has accepted the connection and authenticated it; :class:`GuardedSocket`
then stands between the client and the handler's ``receive``/``send``:

- frames over ``max_frame_bytes`` close the connection with 1009;
- binary frames get an error frame (the API speaks JSON text);
- more than ``burst`` messages at ``rate`` per second get ``rate_limited`` error frames,
  and a client that keeps sending ``burst`` more past the limit is closed with 1008;
- on routes whose messages cost (the chat stream), each message is charged to the
  subject's and address's quotas; over them it gets a ``rate_limited`` error frame;
- for a ``--signing`` token every client frame must be signed (checked and unwrapped
  here; refusals are error frames, ``MAX_FAILURES`` of them close with 4401) and every
  server frame is sealed in a signed envelope;
- a watcher closes the connection with 4401 once the token expires or is revoked
  (checked every ``watch_s``).

The handler sees a plain WebSocket: a ``connect`` message first, its ``accept`` is
absorbed, a ``disconnect`` arrives when the guard closed the connection, and sending
after that raises ``WebSocketDisconnect``, as a server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocketDisconnect

from serve.security.signing import MAX_FAILURES, BadSignature, FrameVerifier

WATCH_S = 0.5


def error_frame(code: str, message: str) -> str:
    """The contract's WebSocket error frame."""
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


class GuardedSocket:
    """Wraps one connection's ASGI ``receive``/``send`` (see the module docstring)."""

    def __init__(self, receive: Receive, send: Send, *, max_frame_bytes: int,
                 rate: float, burst: int, still_valid: Callable[[], str | None],
                 verifier: FrameVerifier | None = None, watch_s: float = WATCH_S,
                 charge: Callable[[], Awaitable[float | None]] | None = None) -> None:
        self._receive = receive
        self._send = send
        self.max_frame_bytes = max_frame_bytes
        self.rate = rate
        self.burst = burst
        self.still_valid = still_valid
        self.verifier = verifier
        self.watch_s = watch_s
        self.charge = charge  # per message: None when allowed, else seconds to wait
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.close_code: int | None = None
        self.close_reason = ""
        self.refusals: dict[str, int] = {}
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._over = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start reading the client and watching the token."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump()), loop.create_task(self._watch())]

    async def stop(self) -> None:
        """Stop the helper tasks (the handler has returned)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def receive(self) -> Message:
        """What the handler reads."""
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        """What the handler writes; signed for a signing client, dropped once closed."""
        kind = message["type"]
        if kind == "websocket.accept":
            return
        if self.close_code is not None:  # as a server does once the connection is gone
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        if kind == "websocket.close":
            self.close_code = int(message.get("code", 1000))
            self.close_reason = str(message.get("reason") or "")
        elif kind == "websocket.send" and self.verifier is not None:
            text = message.get("text")
            if text is None:
                text = bytes(message["bytes"]).decode("utf-8", "replace")
            message = {"type": "websocket.send", "text": self.verifier.seal(text)}
        await self._send(message)

    async def close(self, code: int, reason: str) -> None:
        """Close the connection and tell the handler it is gone."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        with contextlib.suppress(Exception):  # the client may already be gone
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    async def _reply_error(self, code: str, message: str) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + 1
        if self.close_code is None:
            await self.send({"type": "websocket.send", "text": error_frame(code, message)})

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._over = 0
            return True
        return False

    async def _pump(self) -> None:
        try:
            while self.close_code is None:
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    if self.close_code is None:
                        self.close_code = int(message.get("code", 1005))
                    self.inbox.put_nowait(message)
                    return
                if message["type"] != "websocket.receive":
                    continue
                await self._inbound(message)
        except Exception:  # the transport failed: the handler sees a disconnect
            if self.close_code is None:
                self.close_code = 1006
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def _inbound(self, message: Message) -> None:
        text = message.get("text")
        if not frame_size_ok(message, self.max_frame_bytes):
            await self.close(1009, f"frame over {self.max_frame_bytes} bytes")
            return
        if not self._take_token():
            self._over += 1
            if self._over >= self.burst:
                await self.close(1008, "message flood")
            else:
                await self._reply_error("rate_limited", f"over {self.rate:g} messages/s; "
                                        "messages are dropped until the rate falls")
            return
        if text is None:
            await self._reply_error("binary_not_supported", "send JSON text frames")
            return
        if self.verifier is not None:
            try:
                frame = self.verifier.check(orjson.loads(text))
            except orjson.JSONDecodeError:
                await self._reply_error("invalid_json", "message is not valid JSON")
                return
            except BadSignature as exc:
                await self._reply_error(exc.code, str(exc))
                if self.verifier.failures >= MAX_FAILURES:
                    await self.close(4401, "repeated bad signatures")
                return
            text = orjson.dumps(frame).decode()
        if self.charge is not None:
            wait_s = await self.charge()
            if wait_s is not None:
                await self._reply_error("rate_limited", f"rate limit exceeded; retry in "
                                        f"{max(1, int(-(-wait_s // 1)))} s")
                return
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def _watch(self) -> None:
        while self.close_code is None:
            await asyncio.sleep(self.watch_s)
            problem = self.still_valid()
            if problem is not None:
                await self.close(4401, problem)
                return


def frame_size_ok(message: dict[str, Any], limit: int) -> bool:
    """Whether a received ASGI message's frame is within ``limit`` bytes."""
    text, data = message.get("text"), message.get("bytes")
    size = len(text.encode()) if text is not None else len(data or b"")
    return size <= limit
