"""Signed bearer tokens: issue and verify; who a request is (:class:`Principal`).

Tokens are HS256 JWTs with a ``kid`` header naming a key of the
:class:`~serve.security.keyring.Keyring`, and the claims ``sub``, ``role``, ``iss``,
``aud``, ``iat``, ``exp`` and ``jti`` (all required; the algorithm is pinned), plus
``nets`` (CIDRs the token may be used from) and ``sgn`` (its WebSocket frames must be
signed) when issued so. Roles are ordered: viewer < analyst < admin. Whether a token was
revoked is the request pipeline's check (:mod:`serve.security.revocation`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import jwt
from starlette.requests import HTTPConnection
from starlette.types import Scope

from core.errors import Forbidden, Unauthorized
from serve.security.keyring import Keyring, frame_key

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ISSUER = "marketray"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 30 * 24 * 3600
VERIFIED_CACHE_SIZE = 10_000
PRINCIPAL_SCOPE_KEY = "marketray.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, with which role, and what their token allows."""

    subject: str
    role: Role
    jti: str = ""
    issued_at: float = 0.0
    expires_at: float = float("inf")
    kid: str = ""
    networks: tuple[str, ...] = ()
    signing: bool = False

    def allows(self, role: Role) -> bool:
        """Return True when this principal's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


class TokenSigner:
    """Issue and verify tokens with a keyring (or one secret, for tests and tools).

    A token whose signature verified once is remembered (up to ``VERIFIED_CACHE_SIZE``),
    so a client's next request costs a dict lookup instead of an HMAC and a JSON parse;
    expiry and its key's retirement are still checked each time.
    """

    def __init__(self, secret: str | Keyring, *, audience: str = "marketray-api") -> None:
        self.keyring = secret if isinstance(secret, Keyring) else Keyring(secret)
        self.audience = audience
        self._verified: dict[str, Principal] = {}

    def issue(self, role: Role, subject: str = "user", ttl_s: float = DEFAULT_TTL_S, *,
              allow_ip: Sequence[str] = (), signing: bool = False) -> str:
        """Return a signed token for ``subject`` with ``role`` valid for ``ttl_s`` seconds."""
        return self.issue_with_claims(role, subject, ttl_s, allow_ip=allow_ip,
                                      signing=signing)[0]

    def issue_with_claims(self, role: Role, subject: str = "user",
                          ttl_s: float = DEFAULT_TTL_S, *, allow_ip: Sequence[str] = (),
                          signing: bool = False) -> tuple[str, dict[str, Any]]:
        """Like :meth:`issue`, and also return the claims (``jti``, ``exp``, ...)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if ttl_s <= 0:
            raise ValueError("ttl must be positive")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": subject, "role": role, "iat": now,
                                  "exp": now + int(ttl_s), "iss": ISSUER,
                                  "aud": self.audience, "jti": uuid.uuid4().hex}
        if allow_ip:
            claims["nets"] = list(allow_ip)
        if signing:
            claims["sgn"] = True
        key = self.keyring.current
        token = jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, claims

    def verify(self, token: str) -> Principal:
        """Return the token's principal; raise :class:`Unauthorized` if it does not verify."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if now >= known.expires_at:
                del self._verified[token]
                raise Unauthorized("token expired", code="token_expired")
            if self.keyring.lookup(known.kid, now) is None:
                del self._verified[token]
                raise Unauthorized("the token's signing key was retired", code="token_invalid")
            return known
        principal = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="token_invalid") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("invalid token", code="token_invalid")
        key = self.keyring.lookup(str(header.get("kid", "")))
        if key is None:
            raise Unauthorized("invalid token or retired signing key", code="token_invalid")
        try:
            claims = jwt.decode(
                token, key.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                audience=self.audience,
                options={"require": ["sub", "role", "exp", "iat", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="token_invalid") from exc
        role = claims.get("role")
        networks = claims.get("nets", [])
        if role not in ROLES or not isinstance(networks, list):
            raise Unauthorized("invalid token", code="token_invalid")
        return Principal(subject=str(claims["sub"]), role=role, jti=str(claims["jti"]),
                         issued_at=float(claims["iat"]), expires_at=float(claims["exp"]),
                         kid=key.kid, networks=tuple(str(n) for n in networks),
                         signing=bool(claims.get("sgn", False)))

    def frame_key(self, principal: Principal) -> bytes:
        """The key of ``principal``'s signed WebSocket frames (see ``keyring.frame_key``)."""
        key = self.keyring.lookup(principal.kid)
        if key is None:
            raise Unauthorized("the token's signing key was retired", code="token_invalid")
        return frame_key(key, principal.jti)


def bearer_token(connection: HTTPConnection, *, allow_query: bool = False) -> str | None:
    """Return the token from ``Authorization: Bearer`` (or ``?token=`` when allowed)."""
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if allow_query:
        return connection.query_params.get("token") or None
    return None


def principal_of(scope: Scope) -> Principal | None:
    """The principal the request pipeline authenticated for this request, if any."""
    principal: Principal | None = scope.get(PRINCIPAL_SCOPE_KEY)
    return principal


def require_role(role: Role) -> Any:
    """A FastAPI dependency returning the pipeline's principal, insisting on ``role``.

    The pipeline has already enforced the route's own policy; this is for handlers that
    need a stricter role than their route's, and for routes written before the pipeline.
    """

    async def dependency(connection: HTTPConnection) -> Principal:
        principal = principal_of(connection.scope)
        if principal is None:
            raise Unauthorized("missing bearer token", code="token_missing")
        if not principal.allows(role):
            raise Forbidden(f"this action needs the {role} role; token has {principal.role}")
        return principal

    return dependency


async def accept_authenticated(websocket: Any, signer: TokenSigner | None = None
                               ) -> Principal | None:
    """Accept a WebSocket the request pipeline has authenticated; return its principal.

    The pipeline (:mod:`serve.security.pipeline`) has already checked the address, the
    token (``?token=``, header or first ``auth`` message), its revocation and the route's
    role, so this only completes the handshake. ``signer`` is unused (kept for callers).
    """
    del signer
    await websocket.accept()
    return principal_of(websocket.scope)
