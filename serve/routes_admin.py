"""Admin routes: revoke tokens, show the effective configuration (secrets masked)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.deps import CurrentPrincipal, ServicesDep
from serve.security.policy import errors, secured
from serve.security.sanitize import masked_settings

router = APIRouter(prefix="/admin", tags=["admin"])


class RevocationRequest(BaseModel):
    """Revoke one token (``jti``) or every token of a subject issued so far."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no false for a time, no 1 for a name
    jti: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    subject: str | None = Field(None, min_length=1, max_length=128,
                                pattern=r"^[^\x00-\x1f\x7f]+$")
    expires_at: float | None = Field(
        None, ge=0, le=1e11, description="the token's exp, Unix seconds (jti only): the "
        "revocation lasts until then; default the longest token lifetime")

    @model_validator(mode="after")
    def _exactly_one(self) -> RevocationRequest:
        if (self.jti is None) == (self.subject is None):
            raise ValueError("give exactly one of jti and subject")
        return self


class Revocation(BaseModel):
    """A stored revocation."""

    kind: Literal["jti", "subject"]
    value: str
    at: float
    until: float


class ConfigView(BaseModel):
    """The effective settings, secrets masked."""

    settings: dict[str, Any]


@router.post("/revocations", status_code=201, response_model=Revocation,
             responses=errors(401, 403, 413, 422, 429))
@secured("admin", cost=1)
async def revoke(body: RevocationRequest, services: ServicesDep,
                 principal: CurrentPrincipal) -> Revocation:
    """Revoke a token by ``jti`` or all of a subject's tokens; effective on every replica."""
    security = services.security_state()
    kind: Literal["jti", "subject"] = "jti" if body.jti else "subject"
    value = body.jti or body.subject or ""
    entry = await security.revocations.revoke(
        kind, value, until=body.expires_at if kind == "jti" else None)
    security.security_event("token_revoked", by=principal.subject, kind=kind, value=value)
    return Revocation.model_validate(entry)


@router.get("/config", response_model=ConfigView, responses=errors(401, 403, 429))
@secured("admin", cost=1)
async def config(services: ServicesDep) -> ConfigView:
    """The effective settings with every secret masked."""
    return ConfigView(settings=masked_settings(services.settings))
