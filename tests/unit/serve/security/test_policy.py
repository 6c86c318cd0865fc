"""Route policies: the role and cost each endpoint declares, and what OpenAPI says of them."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI

from serve.security.policy import (
    BEARER,
    UNMARKED,
    RoutePolicy,
    document_security,
    errors,
    flat_routes,
    policy_of,
    secured,
)


def test_a_marked_endpoint_carries_its_policy_and_an_unmarked_one_needs_admin() -> None:
    @secured("analyst", cost=3, message_cost=1)
    async def quote() -> None: ...

    async def forgotten() -> None: ...

    assert policy_of(quote) == RoutePolicy("analyst", 3, False, 1)
    assert policy_of(forgotten) == UNMARKED
    assert UNMARKED.role == "admin"  # a route nobody marked is closed, not open
    assert policy_of(None) == UNMARKED


@pytest.mark.parametrize("costs", [{"cost": -1}, {"message_cost": -2}])
def test_negative_costs_are_refused(costs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="negative"):
        secured("viewer", **costs)


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/market/{symbol}", responses=errors(404, 429))
    @secured("viewer", cost=2)
    async def market(symbol: str) -> dict[str, str]:
        return {"symbol": symbol}

    @app.get("/health")
    @secured(None)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    document_security(app)
    return app


def test_included_routers_are_expanded_in_matching_order() -> None:
    paths = [getattr(route, "path", None) for route in flat_routes(_app().router.routes)]

    assert paths.index("/health") < paths.index("/market/{symbol}")


def test_a_router_included_with_a_prefix_is_refused() -> None:
    app = FastAPI()
    router = APIRouter()
    router.add_api_route("/x", lambda: None)
    app.include_router(router, prefix="/v1")

    with pytest.raises(ValueError, match="prefix"):
        flat_routes(app.router.routes)


def test_openapi_names_the_bearer_role_and_cost_of_each_operation() -> None:
    schema = _app().openapi()

    market = schema["paths"]["/market/{symbol}"]["get"]
    health = schema["paths"]["/health"]["get"]
    assert market["security"] == [{BEARER: []}]
    assert (market["x-marketray-role"], market["x-marketray-cost"]) == ("viewer", 2)
    assert "security" not in health
    assert "x-marketray-role" not in health
    assert schema["components"]["securitySchemes"][BEARER]["scheme"] == "bearer"
    assert {"404", "429"} <= set(market["responses"])
    assert "ErrorBody" in str(market["responses"]["404"])
