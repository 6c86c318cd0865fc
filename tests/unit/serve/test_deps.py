"""How routes reach the replica: the services, the principal, the feed's interest."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from starlette.requests import HTTPConnection

from core.errors import Unauthorized, Unavailable
from serve import deps
from serve.auth import PRINCIPAL_SCOPE_KEY, Principal
from tests.unit.serve.fakes import make_services


class FeedHandle:
    """Stands for the feed actor's handle: ``set_interest.remote`` records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.set_interest = SimpleNamespace(remote=self._remote)

    async def _remote(self, symbols: list[str]) -> None:
        self.calls.append(symbols)


def _connection(app: FastAPI, principal: Principal | None = None) -> HTTPConnection:
    scope = {"type": "http", "app": app, "headers": [], PRINCIPAL_SCOPE_KEY: principal}
    return HTTPConnection(scope)


def test_the_feed_hears_the_streamed_symbols_only_when_they_change() -> None:
    services = make_services()
    feed = FeedHandle()
    services.market = SimpleNamespace(actors=SimpleNamespace(feed=feed))
    services.hub = SimpleNamespace(audience={"market": {"AAPL": set()}, "options": {}})

    async def scenario() -> None:
        await services.notify_interest()
        await services.notify_interest()  # unchanged: not sent again
        services.hub.audience["options"]["SPY"] = set()
        await services.notify_interest()

    asyncio.run(scenario())

    assert feed.calls == [["AAPL"], ["AAPL", "SPY"]]


def test_without_a_hub_nothing_is_sent() -> None:
    services = make_services()
    services.hub = None
    services.market = SimpleNamespace()  # would fail if reached

    asyncio.run(services.notify_interest())


def test_the_security_state_is_built_once_per_replica() -> None:
    services = make_services()

    assert services.security_state() is services.security_state()


def test_services_come_from_the_app_state_else_the_installed_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deps, "_installed", None)
    bare, attached, installed = FastAPI(), FastAPI(), make_services()
    attached.state.services = make_services()

    with pytest.raises(Unavailable, match="starting"):
        deps.services_of(_connection(bare))
    deps.install(installed)

    assert deps.services_of(_connection(attached)) is attached.state.services
    assert deps.services_of(_connection(bare)) is installed


def test_a_route_gets_the_principal_the_pipeline_authenticated() -> None:
    ann = Principal(subject="ann", role="viewer")

    assert asyncio.run(deps.current_principal(_connection(FastAPI(), ann))) is ann
    with pytest.raises(Unauthorized) as info:
        asyncio.run(deps.current_principal(_connection(FastAPI())))
    assert info.value.code == "token_missing"
