"""The cache interface every backend implements (all methods are coroutines)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from market.cache.gcra import Quota, RateDecision


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """Backend health for ``/health``: ``degraded`` when serving from the fallback."""

    backend: str
    healthy: bool
    degraded: bool
    detail: str = ""


class Cache(Protocol):
    """Key/value with TTL, bounded lists and token-bucket rate limits."""

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store ``value``; ``ttl_s`` None keeps it until deleted."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the key (lists too); absent keys are fine."""
        ...

    async def list_append(
        self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None
    ) -> None:
        """Append to a list, keeping only the newest ``max_len`` items."""
        ...

    async def list_range(self, key: str) -> list[bytes]:
        """Return a list's items, oldest first (empty when absent)."""
        ...

    async def rate_limit(self, key: str, *, limit: int, window_s: float) -> tuple[bool, float]:
        """Take one token from a bucket of ``limit`` per ``window_s``.

        Returns ``(allowed, retry_after_s)``; ``retry_after_s`` is 0 when allowed.
        """
        ...

    async def rate_take(self, keys: Sequence[str], *, cost: int, quotas: Sequence[Quota],
                        fallback_share: float = 1.0) -> RateDecision:
        """Charge ``cost`` to every key's quota at once (GCRA, see :mod:`market.cache.gcra`).

        Allowed only when every quota has room; then all are charged. A backend serving
        from its local fallback scales each quota by ``fallback_share`` (1 / replicas).
        """
        ...

    async def status(self) -> CacheStatus:
        """Return the backend's health."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
