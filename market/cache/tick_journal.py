"""The feed's tick journal in Redis (:class:`market.feeds.journal.TickJournal`).

One stream per shard, ``<prefix><shard>``; one entry per routed batch part, its columns as
raw little-endian bytes. Entry ids are the Redis server's clock (ms), so pruning by tick
time trims by id with a margin for clock skew between the feed's node and Redis. A
deployment's journal is this prefix in the Redis database of ``redis_url``: two
deployments sharing a database need different prefixes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
from redis import Redis
from redis.exceptions import RedisError

from market.feeds.base import NS_PER_SECOND, BarBatch, TickBatch

log = logging.getLogger("marketray.feed")

Batch = TypeVar("Batch", TickBatch, BarBatch)
NS_PER_MS = 1_000_000
# Clocks of the feed's node and Redis may differ by this much (NTP keeps them far closer).
CLOCK_SKEW_NS = 30 * NS_PER_SECOND
# Entries per shard stream at most (about 30 minutes of 20 ms batches): a bound, not a
# retention policy; pruning by the acknowledged minute keeps streams to a minute or two.
MAX_ENTRIES = 100_000


def encode(batch: TickBatch | BarBatch) -> bytes:
    """Return the batch as a row count and its columns' bytes, in ``dtypes`` order."""
    columns = [np.ascontiguousarray(getattr(batch, name), dtype).astype(
        np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()
        for name, dtype in batch.dtypes.items()]
    return np.array([len(batch)], "<i8").tobytes() + b"".join(columns)


def decode(kind: type[Batch], data: bytes) -> Batch:
    """Rebuild a batch from :func:`encode`'s bytes."""
    n = int(np.frombuffer(data, "<i8", 1)[0]) if len(data) >= 8 else -1
    row_bytes = sum(np.dtype(dtype).itemsize for dtype in kind.dtypes.values())
    if n < 0 or len(data) != 8 + n * row_bytes:
        raise ValueError(f"journal entry of {len(data)} bytes does not hold {n} rows")
    offset, columns = 8, {}
    for name, dtype in kind.dtypes.items():
        little = np.dtype(dtype).newbyteorder("<")
        columns[name] = np.frombuffer(data, little, n, offset).astype(dtype)
        offset += n * little.itemsize
    return kind.from_columns(**columns)


class RedisJournal:
    """A :class:`~market.feeds.journal.TickJournal` in Redis streams; it outlives the feed.

    Redis errors do not stop the feed: a failed append returns False (the router counts
    it), a failed read returns nothing and is logged; both count in :attr:`errors`.
    """

    durable = True

    def __init__(self, url: str, *, prefix: str = "marketray:journal:",
                 timeout_s: float = 1.0) -> None:
        self.url = url
        self.prefix = prefix
        self.redis: Redis = Redis.from_url(url, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s)
        self.errors = 0
        self._trimmed: dict[int, int] = {}

    def key(self, shard: int) -> str:
        """The Redis key of shard ``shard``'s stream."""
        return f"{self.prefix}{shard}"

    def append(self, parts: Mapping[int, tuple[TickBatch, BarBatch]]) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        written = 0
        for k, (ticks, bars) in parts.items():
            if not (len(ticks) or len(bars)):
                continue
            fields: dict[Any, Any] = {"t": encode(ticks), "b": encode(bars)}
            pipe.xadd(self.key(k), fields, maxlen=MAX_ENTRIES, approximate=True)
            written += 1
        if not written:
            return True
        try:
            pipe.execute()
        except RedisError as exc:
            self._failed("append", exc)
            return False
        return True

    def read(self, shard: int, since_ns: int) -> tuple[TickBatch, BarBatch]:
        start = "-" if since_ns <= CLOCK_SKEW_NS else str((since_ns - CLOCK_SKEW_NS) // NS_PER_MS)
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = self.redis.xrange(  # type: ignore[assignment] # redis-py types the sync and async clients as one
                self.key(shard), min=start, max="+")
        except RedisError as exc:
            self._failed("read", exc)
            return TickBatch.empty(), BarBatch.empty()
        ticks = TickBatch.concat([decode(TickBatch, fields[b"t"]) for _, fields in entries])
        bars = BarBatch.concat([decode(BarBatch, fields[b"b"]) for _, fields in entries])
        return ticks.take(ticks.ts_ns >= since_ns), bars.take(bars.ts_ns >= since_ns)

    def prune(self, shard: int, before_ns: int) -> None:
        # Entries written before the cut's server time hold ticks of earlier minutes only.
        cut = (before_ns - CLOCK_SKEW_NS) // NS_PER_MS
        if cut <= self._trimmed.get(shard, 0):
            return  # once per minute, not per batch: the cut moves by minutes
        try:
            self.redis.xtrim(self.key(shard), minid=str(cut), approximate=False)
        except RedisError as exc:
            self._failed("prune", exc)
            return
        self._trimmed[shard] = cut

    def clear(self, shards: int) -> None:
        try:
            self.redis.delete(*[self.key(k) for k in range(shards)])
        except RedisError as exc:
            self._failed("clear", exc)
        self._trimmed.clear()

    def _failed(self, what: str, exc: RedisError) -> None:
        self.errors += 1
        log.warning("tick journal %s failed at %s: %s", what, self.url, exc,
                    extra={"event": "feed.journal_failed", "operation": what})
