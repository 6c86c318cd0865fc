"""The market actors' Ray names: one per shard, none shared with the feed."""

from __future__ import annotations

import actors.sharding as names
import market.sharding


def test_each_shard_has_its_own_name_distinct_from_the_feed() -> None:
    shards = [names.shard_name(i) for i in range(64)]

    assert len(set(shards)) == 64
    assert names.FEED_ACTOR_NAME not in shards
    assert all(name.startswith(names.NAMESPACE) for name in [*shards, names.FEED_ACTOR_NAME])


def test_ownership_is_the_domain_rule_not_a_second_copy() -> None:
    # the actors must place symbols exactly as the feed's router does
    assert names.shard_of is market.sharding.shard_of
    assert names.partition is market.sharding.partition
