"""Signed WebSocket frames: the canonical form, the client helper and the server's checks.

A token issued with ``marketray token --signing`` comes with a frame key (printed as 64
hex characters; the HMAC key is that text's ASCII bytes). The key is derived from the
server's signing key and the token's ``jti``, so the server stores nothing per token.

Client to server: the frame's own fields plus ``ts`` (Unix milliseconds), ``nonce`` (8-64
characters of ``[A-Za-z0-9_-]``, never reused) and ``sig``, the hex HMAC-SHA256 of the
canonical form of the frame without ``sig``. The server refuses a wrong signature, a
``ts`` more than the window (5 s) from its clock and a nonce it saw inside the window,
each with an error frame; after ``MAX_FAILURES`` it closes with 4401.

Server to client: ``{"seq": n, "ts": ms, "payload": <the frame>, "sig": hex}``, signed
the same way; ``seq`` counts this connection's frames from 1, so a client sees a gap or a
replayed frame as well as a changed byte.

Canonical form: JSON with object keys sorted by code point, no whitespace, UTF-8, numbers
as the shortest text that reads back to the same double: ``canonical(frame)`` below
(``orjson.dumps(frame, option=orjson.OPT_SORT_KEYS)``).

Client use::

    from serve.security.signing import FrameSigner
    signer = FrameSigner(key)                  # the key printed by `marketray token --signing`
    await ws.send(signer.sign({"action": "subscribe", "symbols": ["AAPL"]}))
    frame = signer.open(await ws.recv())       # the payload; raises BadSignature if tampered
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_FAILURES = 5
SIGNED_FIELDS = ("ts", "nonce", "sig")


class BadSignature(ValueError):
    """A frame whose signature, time, nonce or sequence does not check out.

    ``code``: ``signature_missing``, ``signature_invalid``, ``stale`` or ``replay`` (client
    frames); ``sequence_gap`` (server frames).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def canonical(frame: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers (see the module docstring)."""
    return orjson.dumps(frame, option=orjson.OPT_SORT_KEYS)


def signature(key: bytes, frame: Mapping[str, Any]) -> str:
    """Hex HMAC-SHA256 of ``frame``'s canonical form."""
    return hmac.new(key, canonical(frame), hashlib.sha256).hexdigest()


def as_key(key: bytes | str) -> bytes:
    """The HMAC key: the printed key's ASCII bytes."""
    return key.encode() if isinstance(key, str) else key


class FrameSigner:
    """Client side: sign outgoing frames, verify and unwrap the server's."""

    def __init__(self, key: bytes | str) -> None:
        self.key = as_key(key)
        self.expected_seq = 1

    def sign(self, frame: Mapping[str, Any], *, now_ms: int | None = None,
             nonce: str | None = None) -> str:
        """Return ``frame`` with ``ts``, ``nonce`` and ``sig`` added, as JSON text."""
        body = {k: v for k, v in frame.items() if k not in SIGNED_FIELDS}
        body["ts"] = int(time.time() * 1000) if now_ms is None else now_ms
        body["nonce"] = nonce or secrets.token_urlsafe(12)
        body["sig"] = signature(self.key, body)
        return orjson.dumps(body).decode()

    def open(self, text: str | bytes) -> dict[str, Any]:
        """Verify a server frame and return its payload; raise :class:`BadSignature`."""
        try:
            envelope = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadSignature("signature_invalid", "frame is not JSON") from exc
        if not isinstance(envelope, dict) or not isinstance(envelope.get("sig"), str):
            raise BadSignature("signature_missing", "frame is not signed")
        sig = envelope.pop("sig")
        if not hmac.compare_digest(sig, signature(self.key, envelope)):
            raise BadSignature("signature_invalid", "server frame signature does not match")
        seq = envelope.get("seq")
        if seq != self.expected_seq:
            raise BadSignature("sequence_gap", f"expected frame {self.expected_seq}, got {seq}")
        self.expected_seq += 1
        payload: dict[str, Any] = envelope["payload"]
        return payload


class FrameVerifier:
    """Server side, one per connection: check client frames, sign the server's."""

    def __init__(self, key: bytes, *, window_s: float = 5.0,
                 nonces: NonceCache | None = None) -> None:
        self.key = key
        self.window_s = window_s
        self.nonces = nonces or NonceCache()
        self.failures = 0
        self.seq = 0

    def check(self, frame: Any, now: float | None = None) -> dict[str, Any]:
        """Return ``frame`` without its signature fields; raise :class:`BadSignature`."""
        if not isinstance(frame, dict):
            raise self._fail("signature_missing", "a signed frame is a JSON object")
        sig, ts, nonce = frame.get("sig"), frame.get("ts"), frame.get("nonce")
        if not isinstance(sig, str) or not isinstance(nonce, str) or type(ts) is not int:
            raise self._fail("signature_missing", "signed frames need ts (int), nonce and sig")
        if not NONCE.match(nonce):
            raise self._fail("signature_invalid", "nonce must be 8-64 of [A-Za-z0-9_-]")
        body = {k: v for k, v in frame.items() if k != "sig"}
        if not hmac.compare_digest(sig, signature(self.key, body)):
            raise self._fail("signature_invalid", "signature does not match the frame")
        now = time.time() if now is None else now
        if abs(ts / 1000 - now) > self.window_s:
            raise self._fail("stale", f"ts is more than {self.window_s:g} s from server time")
        if not self.nonces.add(self.key, nonce, now + 2 * self.window_s, now):
            raise self._fail("replay", "nonce already used")
        del body["ts"], body["nonce"]
        return body

    def _fail(self, code: str, message: str) -> BadSignature:
        self.failures += 1
        return BadSignature(code, message)

    def seal(self, payload_text: str) -> str:
        """Wrap one outgoing frame (JSON text) in a signed envelope."""
        self.seq += 1
        envelope = {"seq": self.seq, "ts": int(time.time() * 1000),
                    "payload": orjson.loads(payload_text)}
        envelope["sig"] = signature(self.key, envelope)
        return orjson.dumps(envelope).decode()


class NonceCache:
    """Nonces seen inside the signature window, per frame key (one per replica)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._seen: OrderedDict[tuple[bytes, str], float] = OrderedDict()
        self.max_entries = max_entries

    def add(self, key: bytes, nonce: str, until: float, now: float) -> bool:
        """Remember ``nonce`` until ``until``; False when it is already remembered."""
        while self._seen:
            oldest_key, oldest_until = next(iter(self._seen.items()))
            if oldest_until > now and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest_key]
        entry = (key, nonce)
        if entry in self._seen:
            return False
        self._seen[entry] = until
        return True
