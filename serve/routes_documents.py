"""Knowledge routes: GET /search, POST/GET /documents, DELETE /documents/{id} (CONTRACT §5).

Search needs the analyst role, document writes the admin role; listing needs analyst.
Uploads are PDFs up to ``Settings.max_upload_mb``; they are ingested in the background
and their status (pending, indexed, failed, duplicate) shows in GET /documents, whichever
knowledge replica answers (the records live in the shared data dir, serve.knowledge).
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Path, Query, UploadFile
from pydantic import BaseModel

from core.errors import (
    Conflict,
    InvalidInput,
    MarketrayError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from core.models import Source
from serve.deps import Services, ServicesDep
from serve.security.policy import errors, secured
from serve.security.sanitize import neutralize

router = APIRouter(tags=["knowledge"])
_READ_CHUNK = 1024 * 1024


class SearchResponse(BaseModel):
    """Body of GET /search."""

    results: list[Source]


class DocumentStatus(BaseModel):
    """One document in the knowledge base, or an upload on its way in."""

    document_id: str
    title: str | None = None
    uri: str | None = None
    status: Literal["pending", "indexed", "failed", "duplicate"]
    reason: str | None = None
    pages: int | None = None
    chunks: int | None = None
    company: str | None = None
    ticker: str | None = None
    doc_type: str | None = None
    period: str | None = None


class DocumentList(BaseModel):
    """Body of GET /documents."""

    documents: list[DocumentStatus]


async def _knowledge(services: Services, method: str, *args: Any) -> Any:
    """Call the knowledge base (Serve handle or plain object), unwrapping domain errors."""
    if services.knowledge is None:
        raise Unavailable("the knowledge base is not deployed")
    bound = getattr(services.knowledge, method)
    remote = getattr(bound, "remote", None)
    try:
        result = remote(*args) if remote is not None else bound(*args)
        return await result if inspect.isawaitable(result) else result
    except MarketrayError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, MarketrayError) else exc) from None
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MarketrayError):
            raise cause from None
        raise Unavailable("the knowledge base cannot answer right now") from exc


@router.get("/search", response_model=SearchResponse,
            responses=errors(401, 403, 404, 422, 429, 503))
@secured("analyst", cost=5)
async def search(
    services: ServicesDep,
    q: str = Query(..., min_length=1, max_length=1000, description="question or keywords"),
    k: int = Query(5, ge=1, le=50),
    company: str = Query("", max_length=100, description="empty: any"),
    ticker: str = Query("", max_length=12, description="empty: any"),
    doc_type: str = Query("", max_length=20, description="10-K, 10-Q, 8-K, earnings; empty: any"),
    period: str = Query("", max_length=20, description="e.g. FY2023 or FY2024Q2; empty: any"),
) -> SearchResponse:
    """Return the passages most relevant to ``q`` (hybrid dense + BM25), best first."""
    q = neutralize(q, keep_newlines=False)
    if not q.strip():
        raise InvalidInput("q must not be blank")
    filters = {key: value for key, value in
               {"company": company, "ticker": ticker, "doc_type": doc_type,
                "period": period}.items() if value}
    results = await _knowledge(services, "search", q, k, filters or None)
    return SearchResponse(results=[Source(**r) for r in results])


@router.post("/documents", status_code=202, response_model=DocumentStatus,
             responses=errors(401, 403, 409, 413, 422, 429, 503))
@secured("admin", cost=20, upload=True)
async def upload_document(
    file: Annotated[UploadFile, File(description="a PDF")], services: ServicesDep,
) -> DocumentStatus:
    """Accept a PDF and ingest it in the background; 409 when the same content is indexed."""
    limit = services.settings.max_upload_mb * 1024 * 1024
    data = bytearray()
    while chunk := await file.read(_READ_CHUNK):
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"upload exceeds {services.settings.max_upload_mb} MB")
    if not data:
        raise InvalidInput("the uploaded file is empty")
    if not bytes(data[:1024]).lstrip().startswith(b"%PDF"):
        raise InvalidInput("only PDF documents can be uploaded")
    record = await _knowledge(services, "add_document", file.filename or "upload.pdf", bytes(data))
    if record.get("status") == "duplicate":
        raise Conflict(f"document {record['document_id']} is already indexed")
    return DocumentStatus(**record)


@router.get("/documents", response_model=DocumentList,
            responses=errors(401, 403, 429, 503))
@secured("analyst", cost=2)
async def list_documents(services: ServicesDep) -> DocumentList:
    """List indexed documents and the status of recent uploads."""
    documents = await _knowledge(services, "list_documents")
    return DocumentList(documents=[DocumentStatus(**_known_fields(d)) for d in documents])


@router.delete("/documents/{document_id}", status_code=204,
               responses=errors(401, 403, 404, 422, 429, 503))
@secured("admin", cost=5)
async def delete_document(
    document_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")],
    services: ServicesDep,
) -> None:
    """Remove a document from the index (a new index version is published)."""
    if not await _knowledge(services, "delete_document", document_id):
        raise NotFound(f"no document {document_id}")


def _known_fields(document: dict[str, Any]) -> dict[str, Any]:
    fields = DocumentStatus.model_fields
    return {key: value for key, value in document.items() if key in fields}
