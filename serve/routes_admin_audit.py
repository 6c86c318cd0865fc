"""``GET /admin/audit``: read the audit log (every chain) with filters, admins only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from serve.deps import ServicesDep
from serve.observability import audit_dir
from serve.observability.audit import read_entries
from serve.security.policy import errors, secured

router = APIRouter(prefix="/admin", tags=["admin"])


class AuditPage(BaseModel):
    """Matching entries, newest first (each with the ``chain`` it belongs to)."""

    entries: list[dict[str, Any]]
    count: int


def _unix(moment: datetime | None) -> float | None:
    """Unix seconds; a time without a zone is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@router.get("/audit", response_model=AuditPage, responses=errors(401, 403, 422, 429))
@secured("admin", cost=5)
async def audit_entries(
    services: ServicesDep,
    since: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds")] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(
        max_length=64, pattern=r"^[a-z_.]+$",
        description="exact (data.read) or a prefix ending in '.' (auth.)")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> AuditPage:
    """Audit entries matching every given filter, newest first, at most ``limit``."""
    entries = await run_in_threadpool(
        read_entries, audit_dir(services.settings), since=_unix(since), until=_unix(until),
        subject=subject, action=action, limit=limit)
    return AuditPage(entries=entries, count=len(entries))
