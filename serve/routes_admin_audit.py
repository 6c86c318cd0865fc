"""``GET /admin/audit``: read the audit log (every chain) with filters, admins only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
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


class AuditFilters(BaseModel):
    """Every given filter must match; unknown filters are refused (422)."""

    model_config = ConfigDict(extra="forbid")
    since: float | None = Field(None, ge=0, le=1e11, description="Unix seconds")
    until: float | None = Field(None, ge=0, le=1e11, description="Unix seconds")
    subject: str | None = Field(None, min_length=1, max_length=128,
                                pattern=r"^[^\x00-\x1f\x7f]+$")  # as token subjects
    action: str | None = Field(None, max_length=64, pattern=r"^[a-z_.]+$",
                               description="exact (data.read) or a prefix ending in '.' (auth.)")
    limit: int = Field(100, ge=1, le=1_000)


@router.get("/audit", response_model=AuditPage, responses=errors(401, 403, 422, 429))
@secured("admin", cost=5)
async def audit_entries(services: ServicesDep,
                        filters: Annotated[AuditFilters, Query()]) -> AuditPage:
    """Audit entries matching every given filter, newest first, at most ``limit``."""
    entries = await run_in_threadpool(
        read_entries, audit_dir(services.settings), since=filters.since, until=filters.until,
        subject=filters.subject, action=filters.action, limit=filters.limit)
    return AuditPage(entries=entries, count=len(entries))
