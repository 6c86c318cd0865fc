"""Redis-backed cache shared by every Serve replica, with an in-process fallback.

Writes go to Redis and to a local :class:`InMemoryCache` (write-through), so
when Redis goes away the replica keeps answering from memory: the cache
reports ``degraded`` and probes Redis again every ``probe_interval_s``; when
it answers, reads and writes use it again, without a restart. What was
written only to memory during the outage stays local to this replica.

Keys live under ``prefix``: values ``<prefix>v:<key>``, lists
``<prefix>l:<key>``, rate-limit buckets ``<prefix>b:<key>``, GCRA quotas
``<prefix>g:<key>``. Both rate limits are atomic Lua scripts, timed by the Redis
server's clock so replicas agree.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from market.cache import gcra
from market.cache.base import CacheStatus
from market.cache.memory import InMemoryCache

log = logging.getLogger(__name__)
_DOWN = (RedisError, OSError, TimeoutError, ConnectionError)

TOKEN_BUCKET = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = limit / window
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or limit
local last = tonumber(state[2]) or now
tokens = math.min(limit, tokens + math.max(0, now - last) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return {allowed, tostring(retry)}
"""


class RedisCache:
    """:class:`market.cache.base.Cache` on Redis, falling back to memory while it is away."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "marketray:",
        probe_interval_s: float = 2.0,
        timeout_s: float = 0.5,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.probe_interval_s = probe_interval_s
        self._redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self._bucket = self._redis.register_script(TOKEN_BUCKET)
        self._gcra = self._redis.register_script(gcra.LUA)
        self._memory = InMemoryCache()
        self._available = True
        self._next_probe = 0.0
        self._error = ""
        self.failovers = 0

    def _key(self, space: str, key: str) -> str:
        return f"{self.prefix}{space}:{key}"

    def _down(self, exc: BaseException) -> None:
        if self._available:
            self.failovers += 1
            log.warning("Redis at %s unavailable (%s); serving from memory", self.url, exc)
        self._available = False
        self._error = f"{type(exc).__name__}: {exc}"
        self._next_probe = time.monotonic() + self.probe_interval_s

    async def _usable(self) -> bool:
        """Return whether to use Redis now, probing it when the probe is due."""
        if self._available:
            return True
        if time.monotonic() < self._next_probe:
            return False
        try:
            # A restarted server closed the pooled connections: start from fresh ones, or
            # each stale connection would fail once and send the replica back to memory.
            await self._redis.connection_pool.disconnect()
            await self._redis.ping()
        except _DOWN as exc:
            self._down(exc)
            return False
        self._available = True
        self._error = ""
        log.warning("Redis at %s is back; using it again", self.url)
        return True

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        if await self._usable():
            try:
                value = await self._redis.get(self._key("v", key))
                return _as_bytes(value) if value is not None else None
            except _DOWN as exc:
                self._down(exc)
        return await self._memory.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store ``value`` (in Redis and in the local fallback)."""
        await self._memory.set(key, value, ttl_s)
        if await self._usable():
            try:
                px = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
                await self._redis.set(self._key("v", key), value, px=px)
            except _DOWN as exc:
                self._down(exc)

    async def delete(self, key: str) -> None:
        """Remove the key (value, list and bucket)."""
        await self._memory.delete(key)
        if await self._usable():
            try:
                await self._redis.delete(*(self._key(s, key) for s in ("v", "l", "b")))
            except _DOWN as exc:
                self._down(exc)

    async def list_append(
        self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None
    ) -> None:
        """Append, keeping only the newest ``max_len`` items."""
        await self._memory.list_append(key, value, max_len=max_len, ttl_s=ttl_s)
        if await self._usable():
            name = self._key("l", key)
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.rpush(name, value)
                    pipe.ltrim(name, -max_len, -1)
                    if ttl_s is not None:
                        pipe.pexpire(name, max(1, math.ceil(ttl_s * 1000)))
                    else:
                        pipe.persist(name)
                    await pipe.execute()
            except _DOWN as exc:
                self._down(exc)

    async def list_range(self, key: str) -> list[bytes]:
        """Return the list's items, oldest first."""
        if await self._usable():
            try:
                items = await self._redis.lrange(self._key("l", key), 0, -1)
                return [_as_bytes(v) for v in items]
            except _DOWN as exc:
                self._down(exc)
        return await self._memory.list_range(key)

    async def rate_limit(self, key: str, *, limit: int, window_s: float) -> tuple[bool, float]:
        """Take a token from the shared bucket (``limit`` per ``window_s``)."""
        if await self._usable():
            try:
                allowed, retry = await self._bucket(keys=[self._key("b", key)],
                                                    args=[limit, window_s])
                return bool(int(allowed)), float(retry)
            except _DOWN as exc:
                self._down(exc)
        return await self._memory.rate_limit(key, limit=limit, window_s=window_s)

    async def rate_take(self, keys: Sequence[str], *, cost: int, quotas: Sequence[gcra.Quota],
                        fallback_share: float = 1.0) -> gcra.RateDecision:
        """GCRA in one Lua call; from memory with quotas times ``fallback_share`` meanwhile."""
        if await self._usable():
            args: list[float] = [cost]
            for quota in quotas:
                args += [quota.limit, quota.window_s]
            try:
                reply = await self._gcra(keys=[self._key("g", k) for k in keys], args=args)
                return gcra.from_lua(reply)
            except _DOWN as exc:
                self._down(exc)
        return self._memory.take_now(keys, cost, [q.scaled(fallback_share) for q in quotas])

    async def status(self) -> CacheStatus:
        """Report ``degraded`` while serving from memory; probes Redis when due."""
        if self._available:
            try:
                await self._redis.ping()
            except _DOWN as exc:
                self._down(exc)
        else:
            await self._usable()
        if self._available:
            return CacheStatus(backend="redis", healthy=True, degraded=False)
        return CacheStatus(backend="redis", healthy=True, degraded=True,
                           detail=f"Redis unavailable, serving from memory: {self._error}")

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
