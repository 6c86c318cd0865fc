"""How handlers reach the replica: its :class:`Services` and the request's principal.

The ingress deployment builds one :class:`Services` per replica and stores it on
``app.state.services``. Handlers declare what they need with the aliases below, the one
way routes reach the services::

    async def handler(services: ServicesDep, principal: CurrentPrincipal) -> ...

Tests can build a :class:`Services` from plain objects with the same async methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from core.errors import Unauthorized, Unavailable
from core.settings import Settings
from market.cache.base import Cache
from serve.auth import Principal, TokenSigner, principal_of
from serve.hooks import PipelineHooks
from serve.security.pipeline import RequestPipeline, Security


@dataclass
class Services:
    """Everything a route needs; ``knowledge``/``embedder``/``generator`` are Serve handles."""

    settings: Settings
    signer: TokenSigner
    cache: Cache
    market: Any  # serve.market_gateway.MarketGateway
    knowledge: Any = None  # DeploymentHandle to serve.knowledge.KnowledgeBase
    embedder: Any = None  # DeploymentHandle to serve.models.Embedder
    generator: Any = None  # DeploymentHandle to serve.models.Generator
    hub: Any = None  # serve.stream.MarketHub of this replica
    hooks: PipelineHooks | None = None  # what the request pipeline reports to
    security: Security | None = None  # built on first use from the fields above
    _notified: frozenset[str] = frozenset()

    def security_state(self) -> Security:
        """The replica's request-pipeline state (built once)."""
        if self.security is None:
            self.security = Security.build(self.settings, self.signer, self.cache, self.hooks)
        return self.security

    async def notify_interest(self) -> None:
        """Tell the feed which symbols clients stream, when that set changed."""
        if self.hub is None:
            return
        symbols = frozenset(self.hub.audience["market"]) | frozenset(self.hub.audience["options"])
        if symbols != self._notified:
            self._notified = symbols
            await self.market.actors.feed.set_interest.remote(sorted(symbols))


_installed: Services | None = None


def install(services: Services) -> None:
    """Make ``services`` the replica's services (also reachable without ``app.state``)."""
    global _installed
    _installed = services


def services_for(app: Any) -> Services | None:
    """The services of ``app`` (``app.state.services``), else the installed ones, else None."""
    services: Services | None = getattr(app.state, "services", None) or _installed
    return services


def services_of(connection: HTTPConnection) -> Services:
    """Return the replica's services (for direct calls, e.g. in WebSocket handlers)."""
    services = services_for(connection.app)
    if services is None:
        raise Unavailable("service is starting")
    return services


def protect(app: Any, *, server_request_ids: bool = False) -> RequestPipeline:
    """``app`` behind the request pipeline, with the state of ``app``'s services.

    What Serve serves (with ``server_request_ids``: Serve sets ``X-Request-ID``); tests
    wrap their app the same way, so no route goes unchecked.
    """

    def security() -> Security | None:
        services = services_for(app)
        return services.security_state() if services is not None else None

    return RequestPipeline(app, security, server_request_ids=server_request_ids)


async def get_services(connection: HTTPConnection) -> Services:
    """The replica's services (async: no threadpool hop per request)."""
    return services_of(connection)


async def current_principal(connection: HTTPConnection) -> Principal:
    """The principal the request pipeline authenticated for this request."""
    principal = principal_of(connection.scope)
    if principal is None:  # a route whose policy needs no token asked for one
        raise Unauthorized("missing bearer token", code="token_missing")
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
