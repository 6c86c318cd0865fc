"""One place that turns every failure into the contract's JSON error body.

``{"error": {"code", "message", "request_id"}}``; never a stack trace, a file path or
another user's data. The request id is the one the request pipeline assigned
(``serve.security.pipeline``), which also sets the ``X-Request-ID`` header, once.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from core.errors import MarketrayError, RateLimited

log = logging.getLogger("marketray.api")
REQUEST_ID_SCOPE_KEY = "marketray.request_id"

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               422: "invalid_input", 429: "rate_limited", 503: "unavailable"}


class ErrorDetail(BaseModel):
    """What went wrong, in words a client can act on."""

    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    """Every error response's body (CONTRACT §5)."""

    error: ErrorDetail


def request_id_of(scope: Scope) -> str:
    """The request's id (set by the pipeline; a new one when it did not run)."""
    rid = scope.get(REQUEST_ID_SCOPE_KEY)
    if rid is None:
        rid = uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = rid
    return str(rid)


def error_body(code: str, message: str, rid: str) -> bytes:
    """The JSON error body."""
    return orjson.dumps({"error": {"code": code, "message": message, "request_id": rid}})


def error_response(request: Request, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error response (the pipeline adds ``X-Request-ID``)."""
    rid = request_id_of(request.scope)
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"code": code, "message": message, "request_id": rid}})


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` as whole seconds, never early: a client that waits it gets through."""
    return str(max(1, int(-(-seconds // 1))))


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(MarketrayError)
    async def _domain(request: Request, exc: MarketrayError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": retry_after_header(exc.retry_after)}
        return error_response(request, exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "invalid_input", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and request.method in ("POST", "PUT", "PATCH"):
            # FastAPI's "error parsing the body" (bytes that are not UTF-8): invalid input
            return error_response(request, 422, "invalid_input", "request body could not be parsed")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail),
                              dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method,
                      request.scope.get("marketray.route", "unmatched"))
        return error_response(request, 500, "internal_error", "internal error; see server log")
