"""What request handlers reach: settings, signer, cache, market state, model handles.

The ingress deployment builds one :class:`Services` per replica and stores it
on ``app.state.services``; handlers take it with ``Depends(get_services)``.
Tests can build one from plain objects with the same async methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from market.cache.base import Cache
from market.errors import Unavailable
from market.settings import Settings
from serve.auth import TokenSigner


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
    _notified: frozenset[str] = frozenset()

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


async def get_services(connection: HTTPConnection) -> Services:
    """FastAPI dependency for the replica's services (async: no threadpool hop per request)."""
    return services_of(connection)
