"""RedisCache against real Redis servers: the shared one (own key prefix) and one we stop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid

import pytest
import redis

from market.cache import make_cache
from market.cache.redis_cache import RedisCache
from serve.cli import pick_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")]
SHARED_URL = "redis://127.0.0.1:6379/0"


def _shared_available() -> bool:
    try:
        return bool(redis.Redis.from_url(SHARED_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _shared_cache(prefix: str) -> RedisCache:
    # These tests are about the shared server, not fail-over (tested below with a server we
    # stop): a generous timeout keeps a busy host's slow connects from switching a test to
    # the in-memory fallback (40 connects at once once took over the default 0.5 s).
    return RedisCache(SHARED_URL, prefix=prefix, timeout_s=5.0)


@pytest.fixture
async def cache():
    if not _shared_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"marketray-test-{uuid.uuid4().hex}:"
    instance = _shared_cache(prefix)
    yield instance
    await instance.close()
    client = redis.Redis.from_url(SHARED_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


async def test_values_round_trip_and_expire(cache):
    await cache.set("snapshot:AAPL", b"one")
    await cache.set("short", b"gone soon", ttl_s=0.2)

    assert await cache.get("snapshot:AAPL") == b"one"
    assert await cache.get("short") == b"gone soon"
    await asyncio.sleep(0.35)
    assert await cache.get("short") is None
    await cache.delete("snapshot:AAPL")
    assert await cache.get("snapshot:AAPL") is None


async def test_two_replicas_share_values_and_lists(cache):
    other = _shared_cache(cache.prefix)
    try:
        for i in range(5):
            await cache.list_append("session:s1", f"m{i}".encode(), max_len=3, ttl_s=60)
        await cache.set("snapshot:MSFT", b"x")

        assert await other.list_range("session:s1") == [b"m2", b"m3", b"m4"]
        assert await other.get("snapshot:MSFT") == b"x"
        assert (await other.status()).degraded is False
    finally:
        await other.close()


async def test_rate_limit_bucket_is_shared_and_refills(cache):
    other = _shared_cache(cache.prefix)
    try:
        results = [await (cache if i % 2 else other).rate_limit("ip:1", limit=4, window_s=2.0)
                   for i in range(6)]
        await asyncio.sleep(0.6)
        after = await cache.rate_limit("ip:1", limit=4, window_s=2.0)
    finally:
        await other.close()

    assert [allowed for allowed, _ in results] == [True] * 4 + [False] * 2
    assert 0 < results[-1][1] <= 0.5
    assert after[0] is True


async def test_atomic_bucket_under_concurrency(cache):
    outcomes = await asyncio.gather(*(cache.rate_limit("burst", limit=10, window_s=60)
                                      for _ in range(40)))
    assert cache.failovers == 0, "Redis was unreachable, so this tested the fallback"
    assert sum(allowed for allowed, _ in outcomes) == 10


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def test_redis_stop_degrades_then_recovers_without_restart():
    port = pick_port()
    proc = _start_redis(port)
    cache = make_cache(f"redis://127.0.0.1:{port}/0", prefix="t:")
    assert isinstance(cache, RedisCache)
    cache.probe_interval_s = 0.2
    try:
        await cache.set("snapshot:AAPL", b"before")
        assert (await cache.status()).degraded is False

        proc.kill()
        proc.wait(5)
        status = await cache.status()
        served = await cache.get("snapshot:AAPL")
        await cache.set("snapshot:AAPL", b"during")
        allowed, _ = await cache.rate_limit("ip", limit=1, window_s=60)

        assert status.degraded is True
        assert "memory" in status.detail
        assert served == b"before"
        assert await cache.get("snapshot:AAPL") == b"during"
        assert allowed is True

        proc = _start_redis(port)  # a fresh, empty server on the same port
        await asyncio.sleep(0.3)
        recovered = await cache.status()
        await cache.set("snapshot:AAPL", b"after")
        raw = redis.Redis(port=port).get("t:v:snapshot:AAPL")

        assert recovered.degraded is False
        assert raw == b"after"
        assert cache.failovers == 1
    finally:
        await cache.close()
        proc.kill()
        proc.wait(5)
