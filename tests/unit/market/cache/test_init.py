"""Choosing the cache backend from the configuration."""

from __future__ import annotations

import asyncio

import pytest

from market.cache import InMemoryCache, make_cache


@pytest.mark.parametrize("url", [None, ""])
def test_no_redis_url_gives_the_in_process_cache(url: str | None) -> None:
    cache = make_cache(url)

    assert isinstance(cache, InMemoryCache)
    assert asyncio.run(cache.status()).backend == "memory"


def test_a_redis_url_gives_the_redis_backend_with_the_prefix() -> None:
    from market.cache.redis_cache import RedisCache

    cache = make_cache("redis://127.0.0.1:6379/15", prefix="h5test:")
    try:
        assert isinstance(cache, RedisCache)
        assert cache.prefix == "h5test:"
    finally:
        asyncio.run(cache.close())
