"""Shared cache for snapshots, chat sessions and rate limits.

:func:`make_cache` returns the in-process cache when no Redis URL is
configured, else the Redis-backed one (which falls back to memory while Redis
is away). Only this package imports ``redis``.
"""

from __future__ import annotations

from market.cache.base import Cache, CacheStatus
from market.cache.memory import InMemoryCache


def make_cache(redis_url: str | None, *, prefix: str = "marketray:") -> Cache:
    """Return the cache for this configuration."""
    if not redis_url:
        return InMemoryCache()
    from market.cache.redis_cache import RedisCache  # noqa: PLC0415 - only with Redis configured

    return RedisCache(redis_url, prefix=prefix)


__all__ = ["Cache", "CacheStatus", "InMemoryCache", "make_cache"]
