"""``GET /admin/audit``: read the audit log (every chain) with filters, admins only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from market.errors import InvalidInput
from serve.deps import ServicesDep
from serve.observability import audit_dir
from serve.observability.audit import read_entries
from serve.security.policy import errors, secured

router = APIRouter(prefix="/admin", tags=["admin"])
FILTERS = frozenset({"since", "until", "subject", "action", "limit"})


class AuditPage(BaseModel):
    """Matching entries, newest first (each with the ``chain`` it belongs to)."""

    entries: list[dict[str, Any]]
    count: int


@router.get("/audit", response_model=AuditPage, responses=errors(401, 403, 422, 429))
@secured("admin", cost=5)
async def audit_entries(
    request: Request,
    services: ServicesDep,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="Unix seconds")] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11, description="Unix seconds")] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(
        max_length=64, pattern=r"^[a-z_.]+$",
        description="exact (data.read) or a prefix ending in '.' (auth.)")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> AuditPage:
    """Audit entries matching every given filter, newest first, at most ``limit``."""
    unknown = sorted(set(request.query_params) - FILTERS)
    if unknown:  # a misspelt filter must not silently widen an audit query
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)[:100]}")
    entries = await run_in_threadpool(
        read_entries, audit_dir(services.settings), since=since, until=until,
        subject=subject, action=action, limit=limit)
    return AuditPage(entries=entries, count=len(entries))
