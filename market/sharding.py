"""Which shard owns a symbol: a stable hash, the same in every process."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def shard_of(symbol: str, num_shards: int) -> int:
    """Return the shard index that owns ``symbol`` (CRC-32 of the ticker)."""
    return zlib.crc32(symbol.encode()) % num_shards


def partition(symbols: Sequence[str], num_shards: int) -> list[list[str]]:
    """Split ``symbols`` over ``num_shards`` shards, keeping their order within each."""
    parts: list[list[str]] = [[] for _ in range(num_shards)]
    for symbol in symbols:
        parts[shard_of(symbol, num_shards)].append(symbol)
    return parts


def shard_index_array(universe: Sequence[str], num_shards: int) -> npt.NDArray[np.int32]:
    """``out[symbol_id]`` is the shard that owns ``universe[symbol_id]``."""
    return np.array([shard_of(s, num_shards) for s in universe], np.int32)
