"""The one request pipeline: what Serve serves, with the FastAPI app behind it.

Every HTTP request and every WebSocket connection passes, in this order:

1. request id: Ray Serve's (which sets the response header itself), else a trusted
   proxy's ``X-Request-ID``, else a new one set on the response; always exactly once;
2. client address: the peer, or ``X-Forwarded-For`` resolved behind a trusted proxy;
3. IP filter: a refused address gets 403 (WebSocket: close 4403) before anything else;
4. authentication (routes with a role): bearer token (WebSocket: also ``?token=`` or a
   first ``{"action": "auth"}`` message within ``ws_auth_timeout_s``) verified against
   the keyring, its networks, and the revocation list: 401 / close 4401;
5. role: the route's policy (:mod:`serve.security.policy`): 403 / close 4403;
6. rate limit: the route's cost against the subject's and the address's quotas: 429
   with ``Retry-After``; rate-limit headers on every response;
7. the handler (WebSocket: through :class:`~serve.security.websocket.GuardedSocket`).

The hooks (``serve.hooks``) see each request once, refused ones included, with the
route template and the refusal's reason.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.datastructures import QueryParams
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from core.errors import Unauthorized
from core.settings import Settings
from market.cache.base import Cache
from serve.auth import PRINCIPAL_SCOPE_KEY, Principal, TokenSigner
from serve.errors import REQUEST_ID_SCOPE_KEY, error_body, retry_after_header
from serve.hooks import NoHooks, PipelineHooks, RequestKind, RequestRecord
from serve.security.ipfilter import AddressPolicy, token_allows
from serve.security.policy import PUBLIC, RoutePolicy, flat_routes, policy_of
from serve.security.ratelimit import RateLimiter, rate_headers
from serve.security.revocation import RevocationList
from serve.security.signing import FrameVerifier, NonceCache
from serve.security.websocket import GuardedSocket, error_frame, frame_size_ok

log = logging.getLogger("marketray.security")
ROUTE_SCOPE_KEY = "marketray.route"
_REQUEST_ID = re.compile(r"^[!-~]{1,200}$")  # printable ASCII, no spaces
_JSON = [(b"content-type", b"application/json")]
_RESOURCE_PARAMS = ("symbol", "document_id")
_MULTIPART_SLACK = 64 * 1024
_ROUTE_CACHE_SIZE = 10_000
# New request ids: a random per-process prefix and a counter (unique, and no system call
# for randomness per request; ids need not be secret)
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)  # a multipart body's boundaries and part headers


@dataclass
class Security:
    """One replica's security state: the parts the pipeline consults."""

    settings: Settings
    signer: TokenSigner
    addresses: AddressPolicy
    revocations: RevocationList
    limiter: RateLimiter
    hooks: PipelineHooks = field(default_factory=NoHooks)
    nonces: NonceCache = field(default_factory=NonceCache)
    connections: Counter[str] = field(default_factory=Counter)  # open WebSockets per subject

    @classmethod
    def build(cls, settings: Settings, signer: TokenSigner, cache: Cache,
              hooks: PipelineHooks | None = None) -> Security:
        """Assemble the parts from the settings."""
        return cls(settings=settings, signer=signer,
                   addresses=AddressPolicy(settings.ip_allow, settings.ip_deny,
                                           settings.trusted_proxies),
                   revocations=RevocationList(cache, refresh_s=settings.revocation_refresh_s),
                   limiter=RateLimiter(cache, settings), hooks=hooks or NoHooks())

    def security_event(self, name: str, **fields: Any) -> None:
        """Report a security event to the hooks when they take them."""
        report = getattr(self.hooks, "on_security_event", None)
        if report is not None:
            with contextlib.suppress(Exception):  # observers must never break a request
                report(name, **fields)


class Refusal(Exception):
    """A request stopped by the pipeline: status, error code, hook reason, headers."""

    def __init__(self, status: int, code: str, message: str, reason: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.reason = reason or code
        self.headers = headers or []


_WS_CLOSE = {401: 4401, 403: 4403, 404: 1008, 429: 1008}


@dataclass(slots=True)
class _Route:
    template: str
    policy: RoutePolicy
    params: dict[str, Any]


class RequestPipeline:
    """ASGI app: the checks above, then ``app``. ``security_of`` finds the replica's state."""

    def __init__(self, app: FastAPI, security_of: Callable[[], Security | None], *,
                 server_request_ids: bool = False) -> None:
        self.app = app
        self.security_of = security_of
        # Ray Serve assigns every request an X-Request-ID (the client's, else a new one),
        # passes it in the request and sets it on the response itself: then the pipeline
        # takes that id and does not set the header a second time.
        self.server_request_ids = server_request_ids
        self._routes: list[tuple[Any, RoutePolicy]] | None = None
        # (type, method, path) -> matched route: paths repeat (a symbol's quote), and
        # matching walks every route's pattern
        self._matched: dict[tuple[str, str | None, str], _Route] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:  # lifespan
            await self.app(scope, receive, send)

    # -- shared steps -------------------------------------------------------------------

    def _route(self, scope: Scope) -> _Route:
        if self._routes is None:
            self._routes = [(r, policy_of(r.endpoint)
                             if isinstance(r, APIRoute | APIWebSocketRoute) else PUBLIC)
                            for r in flat_routes(self.app.router.routes)]
        key = (scope["type"], scope.get("method"), scope["path"])
        known = self._matched.get(key)
        if known is not None:
            return known
        found = self._match(scope)
        if len(self._matched) >= _ROUTE_CACHE_SIZE:
            self._matched.clear()
        self._matched[key] = found
        return found

    def _match(self, scope: Scope) -> _Route:
        assert self._routes is not None
        partial: _Route | None = None
        for route, policy in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return _Route(route.path, policy, child.get("path_params", {}))
            if match is Match.PARTIAL and partial is None:
                partial = _Route(route.path, PUBLIC, {})  # wrong method: 405, no work done
        return partial or _Route("unmatched", PUBLIC, {})

    def _begin(self, scope: Scope, security: Security | None) -> tuple[str, str, _Headers]:
        headers = _Headers(scope["headers"])
        peer = scope["client"][0] if scope.get("client") else "unknown"
        rid = None
        if self.server_request_ids:
            given = headers.get("x-request-id")
            rid = given if given and _REQUEST_ID.match(given) else None
        if security is not None and security.addresses.is_trusted_proxy(peer):
            if rid is None:
                given = headers.get("x-request-id")
                rid = given if given and _REQUEST_ID.match(given) else None
            client = security.addresses.client_address(peer, headers.get("x-forwarded-for"))
        else:
            client = security.addresses.client_address(peer, None) if security else peer
        scope[REQUEST_ID_SCOPE_KEY] = rid or f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"
        return scope[REQUEST_ID_SCOPE_KEY], client, headers

    def _authenticate(self, security: Security, token: str | None, client: str,
                      policy: RoutePolicy) -> Principal:
        if token is None:
            raise Refusal(401, "token_missing", "missing bearer token")
        try:
            principal = security.signer.verify(token)
        except Unauthorized as exc:
            raise Refusal(401, exc.code, exc.message) from None
        if not token_allows(principal.networks, client):
            raise Refusal(403, "address_not_allowed_for_token",
                          "this token may not be used from this address", "ip_denied")
        security.revocations.poll()
        if security.revocations.is_revoked(principal):
            raise Refusal(401, "token_revoked", "token revoked")
        if policy.role is not None and not principal.allows(policy.role):
            raise Refusal(403, "forbidden", f"this action needs the {policy.role} role; "
                          f"token has {principal.role}", "role_forbidden")
        return principal

    # -- HTTP ---------------------------------------------------------------------------

    def _enter(self, scope: Scope, kind: RequestKind, method: str, status: int
               ) -> tuple[Security | None, Any, PipelineHooks, RequestRecord, _Headers, float]:
        """Start a request or connection: id, client, route, hooks and its record."""
        started, clock = time.time(), time.perf_counter()
        security = self.security_of()
        rid, client, headers = self._begin(scope, security)
        route = self._route(scope)
        scope[ROUTE_SCOPE_KEY] = route.template
        hooks = security.hooks if security is not None else NoHooks()
        hooks.on_request_start(kind, route.template)
        record = RequestRecord(
            request_id=rid, kind=kind, method=method, route=route.template,
            client=client, user_agent=(headers.get("user-agent") or "")[:200], status=status,
            latency_s=0.0, started_at=started,
            resource=next((str(route.params[p]) for p in _RESOURCE_PARAMS
                           if p in route.params), None))
        return security, route, hooks, record, headers, clock

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        security, route, hooks, record, headers, clock = self._enter(
            scope, "http", scope["method"], 500)
        rid, client = record.request_id, record.client
        extra: list[tuple[bytes, bytes]] = [] if self.server_request_ids else [
            (b"x-request-id", rid.encode())]
        try:
            if security is None:
                raise Refusal(503, "unavailable", "service is starting")
            if not security.addresses.allows(client):
                raise Refusal(403, "address_denied", "requests from this address are refused",
                              "ip_denied")
            principal = None
            if route.policy.role is not None:
                principal = self._authenticate(security, _bearer(headers), client, route.policy)
                scope[PRINCIPAL_SCOPE_KEY] = principal
                record.subject, record.role, record.jti = (principal.subject, principal.role,
                                                           principal.jti)
            decision = await security.limiter.charge(client, principal, route.policy.cost)
            if decision is not None:
                extra += rate_headers(decision)
                if not decision.allowed:
                    raise Refusal(429, "rate_limited", "rate limit exceeded; retry after "
                                  "the Retry-After header's seconds",
                                  headers=[(b"retry-after", retry_after_header(
                                      decision.retry_after_s).encode())])
            _single_query_values(scope.get("query_string", b""))
            limit = (security.settings.max_upload_mb * 1024 * 1024 + _MULTIPART_SLACK
                     if route.policy.upload else security.settings.max_body_kb * 1024)
            receive = await self._bounded_body(scope, receive, headers, limit)
        except Refusal as refused:
            refusal = await self._charge_refusal(security, client, refused, extra)
            record.status, record.reason = refusal.status, refusal.reason
            body = error_body(refusal.code, refusal.message, rid)
            await send({"type": "http.response.start", "status": refusal.status,
                        "headers": [*_JSON, (b"content-length", str(len(body)).encode()),
                                    *extra, *refusal.headers]})
            await send({"type": "http.response.body", "body": body})
            self._end(hooks, record, clock)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # already answered 500 by the app's handler, and logged there
            record.status, record.reason = 500, "internal_error"
        finally:
            self._end(hooks, record, clock)

    @staticmethod
    async def _charge_refusal(security: Security | None, client: str, refusal: Refusal,
                              extra: list[tuple[bytes, bytes]]) -> Refusal:
        """Charge a refused authentication to its address, so guessing tokens is limited.

        Returns the refusal, or a 429 once the address is over its budget.
        """
        if security is None or refusal.status not in (401, 403) or refusal.reason == "ip_denied":
            return refusal
        decision = await security.limiter.charge(client, None, 1)
        if decision is None:
            return refusal
        extra += rate_headers(decision)
        if decision.allowed:
            return refusal
        return Refusal(429, "rate_limited", "rate limit exceeded; retry after the Retry-After "
                       "header's seconds", headers=[(b"retry-after", retry_after_header(
                           decision.retry_after_s).encode())])

    async def _bounded_body(self, scope: Scope, receive: Receive, headers: _Headers,
                            limit: int) -> Receive:
        """Refuse a body over ``limit`` (413) before the handler reads any of it."""
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise Refusal(400, "bad_request", "invalid Content-Length")
            if int(length) > limit:
                raise Refusal(413, "payload_too_large", f"request body over {limit} bytes")
            return receive
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        chunks: list[bytes] = []  # no length given: read it here, within the limit
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refusal(413, "payload_too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive() -> Message:
            return replay.pop() if replay else await receive()

        return replay_receive

    @staticmethod
    def _end(hooks: PipelineHooks, record: RequestRecord, clock: float) -> None:
        record.latency_s = time.perf_counter() - clock
        with contextlib.suppress(Exception):  # observers must never break a request
            hooks.on_request_end(record)

    # -- WebSocket ----------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        security, route, hooks, record, headers, clock = self._enter(
            scope, "websocket", "WS", 1000)
        rid, client = record.request_id, record.client
        first = await receive()
        if first["type"] != "websocket.connect":
            record.status, record.reason = 1006, "disconnected"
            self._end(hooks, record, clock)
            return
        await send({"type": "websocket.accept", "headers": [] if self.server_request_ids
                    else [(b"x-request-id", rid.encode())]})
        subject: str | None = None
        guard: GuardedSocket | None = None
        try:
            if security is None:
                raise Refusal(503, "unavailable", "service is starting")
            if not security.addresses.allows(client):
                raise Refusal(403, "address_denied", "address refused", "ip_denied")
            if route.template == "unmatched":
                raise Refusal(404, "not_found", "no stream at this path")
            principal = None
            if route.policy.role is not None:
                token = _bearer(headers) or QueryParams(scope.get("query_string", b"")).get(
                    "token") or await self._auth_message(security, receive, send)
                principal = self._authenticate(security, token, client, route.policy)
                scope[PRINCIPAL_SCOPE_KEY] = principal
                record.subject, record.role, record.jti = (principal.subject, principal.role,
                                                           principal.jti)
                if security.connections[principal.subject] >= \
                        security.settings.ws_max_connections_per_subject:
                    raise Refusal(429, "too_many_connections", "too many open connections "
                                  "for this subject", "connection_cap")
                subject = principal.subject
                security.connections[subject] += 1
            decision = await security.limiter.charge(client, principal, route.policy.cost)
            if decision is not None and not decision.allowed:
                raise Refusal(429, "rate_limited", "rate limit exceeded")
            guard = self._guard(security, principal, receive, send)
            if route.policy.message_cost and security.limiter.enabled:
                guard.charge = self._message_charge(security, client, principal,
                                                    route.policy.message_cost)
            guard.start()
            try:
                await self.app(scope, guard.receive, guard.send)
            except Exception:
                log.exception("WebSocket handler failed on %s", route.template)
                await guard.close(1011, "internal error")
                record.reason = "internal_error"
            finally:
                await guard.stop()
            record.status = guard.close_code or 1000
            if record.reason is None and guard.close_code in (1008, 1009, 4401):
                record.reason = {1008: "message_flood", 1009: "frame_too_large",
                                 4401: "token_revoked_or_signature"}[guard.close_code]
            if guard.refusals:
                record.extra["refused_frames"] = dict(guard.refusals)
                for name in ("signature_invalid", "replay", "stale"):
                    if name in guard.refusals:
                        security.security_event(name, subject=subject, request_id=rid,
                                                count=guard.refusals[name])
        except Refusal as refusal:
            code = 4401 if refusal.code == "auth_timeout" else _WS_CLOSE.get(refusal.status,
                                                                              1013)
            record.status, record.reason = code, refusal.reason
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code,
                            "reason": refusal.message[:120]})
        except _ClientGone:
            record.status, record.reason = 1006, "disconnected"
        finally:
            if subject is not None and security is not None:
                security.connections[subject] -= 1
                if security.connections[subject] <= 0:
                    del security.connections[subject]
            self._end(hooks, record, clock)

    @staticmethod
    def _message_charge(security: Security, client: str, principal: Principal | None,
                        cost: int) -> Callable[[], Awaitable[float | None]]:
        async def charge() -> float | None:
            decision = await security.limiter.charge(client, principal, cost)
            return None if decision is None or decision.allowed else decision.retry_after_s

        return charge

    def _guard(self, security: Security, principal: Principal | None, receive: Receive,
               send: Send) -> GuardedSocket:
        settings = security.settings
        verifier = None
        if principal is not None and principal.signing:
            verifier = FrameVerifier(security.signer.frame_key(principal),
                                     window_s=settings.ws_signature_window_s,
                                     nonces=security.nonces)

        def still_valid() -> str | None:
            if principal is None:
                return None
            if time.time() >= principal.expires_at:
                return "token expired"
            security.revocations.poll()
            if security.revocations.is_revoked(principal):
                return "token revoked"
            return None

        return GuardedSocket(receive, send, max_frame_bytes=settings.ws_max_frame_bytes,
                             rate=settings.ws_messages_per_s, burst=settings.ws_message_burst,
                             still_valid=still_valid, verifier=verifier)

    async def _auth_message(self, security: Security, receive: Receive, send: Send) -> str:
        """Wait for ``{"action": "auth", "token": ...}``; return the token or refuse."""
        import asyncio  # noqa: PLC0415 - only this path waits

        try:
            message = await asyncio.wait_for(receive(), security.settings.ws_auth_timeout_s)
        except TimeoutError:
            raise Refusal(401, "auth_timeout", "authentication timeout",
                          "token_missing") from None
        if message["type"] == "websocket.disconnect":
            raise _ClientGone
        if not frame_size_ok(message, security.settings.ws_max_frame_bytes):
            raise Refusal(401, "token_missing", "authentication message too large")
        try:
            data = orjson.loads(message.get("text") or message.get("bytes") or b"")
        except orjson.JSONDecodeError:
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("action") != "auth" or \
                not isinstance(token, str) or not token:
            raise Refusal(401, "token_missing",
                          'first message must be {"action": "auth", "token": ...}')
        try:
            role = security.signer.verify(token).role
        except Unauthorized as exc:
            raise Refusal(401, exc.code, exc.message) from None
        await send({"type": "websocket.send",
                    "text": orjson.dumps({"type": "authenticated", "role": role}).decode()})
        return token


class _ClientGone(Exception):
    """The client disconnected before it authenticated."""


def _single_query_values(query: bytes) -> None:
    """Refuse a query string that gives one parameter twice (422): no route takes a list."""
    if not query:
        return
    names = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
    if len(names) != len(set(names)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise Refusal(422, "invalid_input", "query parameter given more than once: "
                      + ", ".join(repeated)[:100])


class _Headers:
    """The few request headers the pipeline reads, found in one pass (first value wins)."""

    __slots__ = ("_found",)
    _WANTED = frozenset((b"authorization", b"x-request-id", b"x-forwarded-for",
                         b"user-agent", b"content-length"))

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        found: dict[bytes, bytes] = {}
        wanted = self._WANTED
        for name, value in raw:
            if name in wanted and name not in found:
                found[name] = value
        self._found = found

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._found.get(name.encode())
        return value.decode("latin-1") if value is not None else default


def _bearer(headers: _Headers) -> str | None:
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


__all__ = ["ROUTE_SCOPE_KEY", "RequestPipeline", "Security", "error_frame"]
