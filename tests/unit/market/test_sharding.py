"""Sharding: every symbol has exactly one owner, the same in every process."""

import subprocess
import sys

from market.sharding import partition, shard_index_array, shard_of

SYMBOLS = [f"S{i:04d}" for i in range(2_000)]


def test_partition_places_each_symbol_once_with_its_owner_in_input_order():
    parts = partition(SYMBOLS, 7)
    assert sorted(s for part in parts for s in part) == sorted(SYMBOLS)
    for k, part in enumerate(parts):
        assert all(shard_of(s, 7) == k for s in part)
        assert part == [s for s in SYMBOLS if shard_of(s, 7) == k]
    assert min(map(len, parts)) > 0.8 * len(SYMBOLS) / 7  # a hash, not a skew


def test_index_array_maps_symbol_ids_to_owners():
    owners = shard_index_array(SYMBOLS, 5)
    assert owners.tolist() == [shard_of(s, 5) for s in SYMBOLS]


def test_owner_is_the_same_in_another_process():
    # Python's own hash() is salted per process; the feed and the ingress must agree.
    code = "from market.sharding import shard_of; print([shard_of(s, 3) for s in %r])"
    out = subprocess.run([sys.executable, "-c", code % SYMBOLS[:50]], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == str([shard_of(s, 3) for s in SYMBOLS[:50]])
