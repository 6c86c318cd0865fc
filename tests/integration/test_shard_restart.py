"""A shard killed with ray.kill is restarted by Ray, re-seeded by the feed, and serves."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from actors.market import start_market
from core.errors import Unavailable
from core.settings import Settings
from serve.market_gateway import MarketGateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="marketray")
    yield
    ray.shutdown()


def test_killed_shard_restarts_and_serves_again(ray_cluster):
    settings = Settings(symbols=("AAPL", "MSFT", "NVDA", "TSLA"), num_shards=2)
    actors = start_market(settings)
    gateway = MarketGateway(actors, settings.symbols)
    before = asyncio.run(gateway.snapshot("AAPL"))
    victim = actors.shards[[i for i, s in enumerate(actors.shards)
                            if ray.get(s.stats.remote())["symbols"] > 0][0]]
    incarnation = ray.get(victim.stats.remote())["incarnation"]

    ray.kill(victim, no_restart=False)

    deadline = time.monotonic() + 60
    stats = None
    while time.monotonic() < deadline:
        try:
            stats = ray.get(victim.stats.remote(), timeout=5)
            if stats["incarnation"] != incarnation and stats["contracts"] > 0:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                ray.exceptions.ActorUnavailableError):
            pass
        time.sleep(0.5)
    assert stats is not None
    assert stats["incarnation"] != incarnation
    assert stats["contracts"] > 0  # chains re-seeded by the feed
    owned = [s for s in settings.symbols
             if gateway.owner(s) is victim or gateway.owner(s)._actor_id == victim._actor_id]
    for symbol in owned:
        for _ in range(40):
            try:
                data = asyncio.run(gateway.snapshot(symbol))
                break
            except Unavailable:
                time.sleep(0.5)
        assert data.price > 0
        assert data.indicators["sma_20"] is not None
    assert before.price > 0
    assert ray.get(actors.feed.status.remote())["reseeds"] >= 1
