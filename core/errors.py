"""Error hierarchy shared by every layer.

Each error carries a snake_case ``code`` and the HTTP status the API maps it to;
the FastAPI exception handler in ``serve`` turns any of them into the contract's
``{"error": {"code", "message", "request_id"}}`` body. Adapters wrap third-party
exceptions into these so callers never see a vendor type.
"""

from __future__ import annotations


class MarketrayError(Exception):
    """Base class: a failure with a stable machine-readable code."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(MarketrayError):
    """The request or message is malformed or out of range."""

    code = "invalid_input"
    status = 422


class BadRequest(MarketrayError):
    """The request cannot be processed as sent."""

    code = "bad_request"
    status = 400


class NotFound(MarketrayError):
    """The named thing (symbol, document, session) does not exist."""

    code = "not_found"
    status = 404


class Unauthorized(MarketrayError):
    """No credentials, or credentials that do not verify."""

    code = "unauthorized"
    status = 401


class Forbidden(MarketrayError):
    """Valid credentials whose role does not allow the action."""

    code = "forbidden"
    status = 403


class Conflict(MarketrayError):
    """The action conflicts with the current state (e.g. a duplicate document)."""

    code = "conflict"
    status = 409


class PayloadTooLarge(MarketrayError):
    """The request body exceeds the configured limit."""

    code = "payload_too_large"
    status = 413


class RateLimited(MarketrayError):
    """Too many requests; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(MarketrayError):
    """A dependency (shard, feed, model, index) cannot serve right now."""

    code = "unavailable"
    status = 503


class FeedError(MarketrayError):
    """A market-data feed failed (connection, auth, protocol)."""

    code = "feed_error"
    status = 503
