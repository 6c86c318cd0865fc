"""Signed bearer tokens and role checks for REST and WebSocket.

Tokens are HS256 JWTs (``sub``, ``role``, ``iat``, ``exp``, ``iss=marketray``)
signed with the service secret. Roles are ordered: viewer < analyst < admin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, get_args

import jwt
import orjson
from fastapi import Depends, WebSocket
from starlette.requests import HTTPConnection

from market.errors import Forbidden, Unauthorized

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ISSUER = "marketray"
DEFAULT_TTL_S = 30 * 24 * 3600
WEBSOCKET_AUTH_TIMEOUT_S = 10.0
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and with which role."""

    subject: str
    role: Role

    def allows(self, role: Role) -> bool:
        """Return True when this principal's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


class TokenSigner:
    """Issue and verify tokens with one secret.

    A token whose signature verified once is remembered with its expiry (up to
    ``VERIFIED_CACHE_SIZE`` of them), so a client's next request costs a dict
    lookup instead of an HMAC and a JSON parse; expiry is still checked each time.
    """

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 characters")
        self._secret = secret
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, role: Role, subject: str = "user", ttl_s: float = DEFAULT_TTL_S) -> str:
        """Return a signed token for ``subject`` with ``role`` valid for ``ttl_s`` seconds."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if ttl_s <= 0:
            raise ValueError("ttl must be positive")
        now = int(time.time())
        claims = {"sub": subject, "role": role, "iat": now, "exp": now + int(ttl_s), "iss": ISSUER}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        """Return the token's principal; raise :class:`Unauthorized` if it does not verify."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
            raise Unauthorized("token expired", code="token_expired")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                options={"require": ["sub", "role", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        role = claims.get("role")
        if role not in ROLES:
            raise Unauthorized("token carries an unknown role", code="invalid_token")
        principal = Principal(subject=str(claims["sub"]), role=role)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal


def bearer_token(connection: HTTPConnection) -> str | None:
    """Return the token from ``Authorization: Bearer`` or the ``token`` query parameter."""
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return connection.query_params.get("token") or None


def authenticate(connection: HTTPConnection, signer: TokenSigner) -> Principal:
    """Verify the connection's token; raise :class:`Unauthorized` when missing or bad."""
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("missing bearer token", code="missing_token")
    return signer.verify(token)


def require_role(role: Role) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency: authenticate and insist on at least ``role``."""
    from serve.deps import Services, get_services  # noqa: PLC0415 - avoid an import cycle

    async def dependency(
        connection: HTTPConnection, services: Services = Depends(get_services)  # noqa: B008
    ) -> Principal:
        principal = authenticate(connection, services.signer)
        if not principal.allows(role):
            raise Forbidden(f"this action needs the {role} role; token has {principal.role}")
        connection.state.principal = principal
        return principal

    return dependency


async def accept_authenticated(websocket: WebSocket, signer: TokenSigner) -> Principal | None:
    """Accept a WebSocket and authenticate it (CONTRACT §6).

    The token comes from ``?token=``, an ``Authorization`` header, or a first
    message ``{"action": "auth", "token": ...}`` (answered with
    ``{"type": "authenticated", "role": ...}``). Closes with 4401 and returns
    None when it is missing or invalid; role checks (4403) are the caller's.
    """
    await websocket.accept()
    try:
        try:
            return authenticate(websocket, signer)
        except Unauthorized as exc:
            if exc.code != "missing_token":
                raise
        raw = await asyncio.wait_for(websocket.receive_text(), WEBSOCKET_AUTH_TIMEOUT_S)
        message = orjson.loads(raw)
        if not isinstance(message, dict) or message.get("action") != "auth":
            raise Unauthorized('first message must be {"action": "auth", "token": ...}')
        principal = signer.verify(str(message.get("token", "")))
        await websocket.send_text(orjson.dumps({"type": "authenticated",
                                                "role": principal.role}).decode())
        return principal
    except (Unauthorized, TimeoutError, orjson.JSONDecodeError) as exc:
        reason = exc.message if isinstance(exc, Unauthorized) else "authentication required"
        await websocket.close(code=4401, reason=reason[:120])
        return None
