import asyncio

from market.cache import InMemoryCache


def test_values_expire_after_ttl():
    async def scenario():
        cache = InMemoryCache()
        await cache.set("k", b"v", ttl_s=0.05)
        assert await cache.get("k") == b"v"
        await asyncio.sleep(0.08)
        return await cache.get("k")

    assert asyncio.run(scenario()) is None


def test_list_keeps_newest_items_in_order():
    async def scenario():
        cache = InMemoryCache()
        for i in range(5):
            await cache.list_append("h", str(i).encode(), max_len=3)
        return await cache.list_range("h")

    assert asyncio.run(scenario()) == [b"2", b"3", b"4"]


def test_rate_limit_refuses_past_limit_with_retry_after():
    async def scenario():
        cache = InMemoryCache()
        results = [await cache.rate_limit("r", limit=3, window_s=60) for _ in range(4)]
        return results

    results = asyncio.run(scenario())
    assert [allowed for allowed, _ in results] == [True, True, True, False]
    assert 0 < results[-1][1] <= 20.0 + 1e-6
