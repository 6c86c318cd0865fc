"""Ray names of the market actors; which shard owns a symbol is :mod:`market.sharding`."""

from __future__ import annotations

from market.sharding import partition, shard_index_array, shard_of

NAMESPACE = "marketray"
FEED_ACTOR_NAME = "marketray-feed"


def shard_name(index: int) -> str:
    """Ray actor name of shard ``index``."""
    return f"marketray-shard-{index}"


__all__ = ["FEED_ACTOR_NAME", "NAMESPACE", "partition", "shard_index_array", "shard_name",
           "shard_of"]
