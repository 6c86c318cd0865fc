"""In-process cache: the default without Redis, and Redis's fallback."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from market.cache import gcra
from market.cache.base import CacheStatus


class InMemoryCache:
    """A single-process implementation of :class:`market.cache.base.Cache`."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._lists: dict[str, tuple[deque[bytes], float | None]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._tats: dict[str, float] = {}
        self._now = time.monotonic

    def _alive(self, expires: float | None) -> bool:
        return expires is None or expires > self._now()

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._now() + ttl_s

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        item = self._values.get(key)
        if item is None:
            return None
        if not self._alive(item[1]):
            del self._values[key]
            return None
        return item[0]

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store ``value`` with an optional time to live."""
        self._values[key] = (value, self._expiry(ttl_s))

    async def delete(self, key: str) -> None:
        """Remove the key."""
        self._values.pop(key, None)
        self._lists.pop(key, None)
        self._buckets.pop(key, None)

    async def list_append(
        self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None
    ) -> None:
        """Append, keeping only the newest ``max_len`` items."""
        items, expires = self._lists.get(key, (deque(maxlen=max_len), None))
        if not self._alive(expires) or items.maxlen != max_len:
            items = deque(items if self._alive(expires) else (), maxlen=max_len)
        items.append(value)
        self._lists[key] = (items, self._expiry(ttl_s))

    async def list_range(self, key: str) -> list[bytes]:
        """Return the list's items, oldest first."""
        item = self._lists.get(key)
        if item is None or not self._alive(item[1]):
            self._lists.pop(key, None)
            return []
        return list(item[0])

    async def rate_limit(self, key: str, *, limit: int, window_s: float) -> tuple[bool, float]:
        """Token bucket: ``limit`` tokens refilled evenly over ``window_s``."""
        now = self._now()
        rate = limit / window_s
        tokens, last = self._buckets.get(key, (float(limit), now))
        tokens = min(float(limit), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) / rate

    async def rate_take(self, keys: Sequence[str], *, cost: int, quotas: Sequence[gcra.Quota],
                        fallback_share: float = 1.0) -> gcra.RateDecision:
        """GCRA over ``keys`` (``fallback_share`` is for backends with a fallback)."""
        return self.take_now(keys, cost, quotas)

    def take_now(self, keys: Sequence[str], cost: int,
                 quotas: Sequence[gcra.Quota]) -> gcra.RateDecision:
        """The synchronous GCRA step behind :meth:`rate_take`."""
        now = self._now()
        if len(self._tats) > 100_000:  # forget keys whose quota is whole again
            self._tats = {k: t for k, t in self._tats.items() if t > now}
        decision, tats = gcra.take([self._tats.get(k) for k in keys], now, cost, quotas)
        if tats is not None:
            self._tats.update(zip(keys, tats, strict=True))
        return decision

    async def status(self) -> CacheStatus:
        """The in-process cache is always healthy."""
        return CacheStatus(backend="memory", healthy=True, degraded=False)

    async def close(self) -> None:
        """Nothing to release."""
