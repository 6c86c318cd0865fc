"""What each route needs: a role (or none) and a rate-limit cost; its documented errors.

Routes declare it next to their path::

    @router.get("/market/{symbol}", responses=errors(401, 403, 404, 422, 429))
    @secured("viewer", cost=1)
    async def market_data(...): ...

The request pipeline reads the policy from the matched route's endpoint before any
handler work runs; a route without one needs the admin role (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from serve.auth import Role
from serve.errors import ErrorBody

F = TypeVar("F", bound=Callable[..., Any])
POLICY_ATTRIBUTE = "__marketray_policy__"
BEARER = "bearerAuth"

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid, expired or revoked token",
    403: "Address refused, or the token's role or networks do not allow this",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid input (unknown fields, out-of-range values)",
    429: "Rate limited; retry after the Retry-After header's seconds",
    503: "A dependency cannot serve right now",
}


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """``role``: the least role allowed (None: no token needed); ``cost``: rate-limit units.

    ``upload``: the body is a file upload, bounded by the settings' ``max_upload_mb``
    (others by ``max_body_kb``). ``message_cost``: what each client message on a
    WebSocket route costs (0: messages are only held to the per-connection rate).
    """

    role: Role | None
    cost: int = 1
    upload: bool = False
    message_cost: int = 0


PUBLIC = RoutePolicy(None, cost=1)
UNMARKED = RoutePolicy("admin", cost=1)


def secured(role: Role | None, *, cost: int = 1, upload: bool = False,
            message_cost: int = 0) -> Callable[[F], F]:
    """Mark an endpoint with the role it needs and what one call (or message) costs."""
    if cost < 0 or message_cost < 0:
        raise ValueError("costs must not be negative")

    def mark(endpoint: F) -> F:
        setattr(endpoint, POLICY_ATTRIBUTE, RoutePolicy(role, cost, upload, message_cost))
        return endpoint

    return mark


def policy_of(endpoint: Callable[..., Any] | None) -> RoutePolicy:
    """The endpoint's policy; an unmarked endpoint needs the admin role."""
    policy: RoutePolicy | None = getattr(endpoint, POLICY_ATTRIBUTE, None)
    return policy if policy is not None else UNMARKED


def flat_routes(routes: list[Any]) -> list[Any]:
    """An app's routes in matching order, included routers expanded."""
    flat: list[Any] = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is None:
            flat.append(route)
            continue
        if route.include_context.prefix:  # every router here carries its prefix itself
            raise ValueError("include_router(prefix=...) is not supported by the pipeline")
        flat += flat_routes(included.routes)
    return flat


def document_security(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI say which operations need a bearer token, role and cost."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            for route in flat_routes(app.router.routes):
                if not isinstance(route, APIRoute) or not route.include_in_schema:
                    continue
                policy = policy_of(route.endpoint)
                for method in route.methods:
                    operation = schema["paths"][route.path][method.lower()]
                    operation["x-marketray-cost"] = policy.cost
                    if policy.role is not None:
                        operation["security"] = [{BEARER: []}]
                        operation["x-marketray-role"] = policy.role
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, in the contract's error shape."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
            for status in statuses}

