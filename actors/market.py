"""Start the market actors (shards + feed) or find the running ones by name."""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray.actor import ActorHandle

from actors.feed import FeedActor
from actors.shard import ShardActor, shard_config
from actors.sharding import FEED_ACTOR_NAME, NAMESPACE, partition, shard_name
from core.settings import Settings


@dataclass
class MarketActors:
    """Handles of the running market actors."""

    shards: list[ActorHandle]
    feed: ActorHandle


def start_market(settings: Settings, universe: tuple[str, ...] | None = None, *,
                 detached: bool = False) -> MarketActors:
    """Create (or join, by name) the shard actors and the feed actor, warm them up and
    start streaming. Idempotent.

    ``universe`` defaults to ``settings.symbols`` and must be the feed's symbol
    list. ``detached`` actors outlive their creator (used when a Serve replica
    creates them, as under KubeRay); otherwise they live as long as the driver.
    """
    universe = universe or settings.symbols
    parts = partition(universe, settings.num_shards)
    config = shard_config(settings)
    # SPREAD puts the shards (and the feed) on different nodes where there are several, so
    # losing one node loses only its share; Ray re-creates them on the survivors.
    placement = {"lifetime": "detached" if detached else None, "scheduling_strategy": "SPREAD",
                 "num_cpus": settings.market_actor_cpus, "namespace": NAMESPACE,
                 "get_if_exists": True}
    shards = [
        ShardActor.options(name=shard_name(i),  # type: ignore[attr-defined]
                           **placement).remote(part, universe, config)
        for i, part in enumerate(parts)
    ]
    feed = FeedActor.options(name=FEED_ACTOR_NAME, **placement).remote(  # type: ignore[attr-defined]
        settings.model_dump(mode="json"), shards, time.time_ns())
    ray.get(feed.start.remote())
    return MarketActors(shards=shards, feed=feed)


def ensure_market(settings: Settings) -> MarketActors:
    """The running market actors, created (detached) if nobody started them yet."""
    try:
        return find_market(settings.num_shards)
    except ValueError:
        return start_market(settings, detached=True)


def find_market(num_shards: int) -> MarketActors:
    """Look the market actors up by name (from a Serve replica or a job)."""
    shards = [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(num_shards)]
    return MarketActors(shards=shards, feed=ray.get_actor(FEED_ACTOR_NAME, namespace=NAMESPACE))
