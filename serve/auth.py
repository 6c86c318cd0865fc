"""Signed bearer tokens and role checks for REST and WebSocket.

Tokens are HS256 JWTs (``sub``, ``role``, ``iat``, ``exp``, ``iss=marketray``)
signed with the service secret. Roles are ordered: viewer < analyst < admin.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, get_args

import jwt
from fastapi import Depends
from starlette.requests import HTTPConnection

from market.errors import Forbidden, Unauthorized

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ISSUER = "marketray"
DEFAULT_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and with which role."""

    subject: str
    role: Role

    def allows(self, role: Role) -> bool:
        """Return True when this principal's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


class TokenSigner:
    """Issue and verify tokens with one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 characters")
        self._secret = secret

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
        return Principal(subject=str(claims["sub"]), role=role)


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
