"""The feed's tick journal: what each shard was sent, kept until the shard has closed it.

A shard's state is its history store (closed minutes, written as each minute closes) plus
the ticks of the minute it is forming. The journal holds the second part for every shard:
the router writes each streamed part to it *before* sending it, and forgets a shard's
entries once the shard has acknowledged a tick of a later minute. A shard that restarts
restores its closed minutes from history and gets the journal's ticks from the minute it
was forming; a feed that restarts (its node died) reads the journal back to bring every
shard up to the last tick the old feed routed.

:class:`MemoryJournal` lives in the feed's process (a lost feed loses it);
:class:`market.cache.tick_journal.RedisJournal` lives in Redis and survives the feed's node.
:func:`journal_from_settings` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from market.feeds.base import BarBatch, TickBatch

if TYPE_CHECKING:
    from core.settings import Settings

# Ticks kept per shard at most (an outage longer than this loses the oldest).
MAX_JOURNAL_TICKS = 2_000_000


class TickJournal(Protocol):
    """Per-shard log of streamed stock ticks and bars (no option ticks: chains re-seed)."""

    durable: bool  # whether the journal outlives the feed's process

    def append(self, parts: Mapping[int, tuple[TickBatch, BarBatch]]) -> bool:
        """Log one batch's parts by shard; False if it could not be written (counted)."""
        ...

    def read(self, shard: int, since_ns: int) -> tuple[TickBatch, BarBatch]:
        """Return the shard's logged ticks and bars at or after ``since_ns``, in log order."""
        ...

    def prune(self, shard: int, before_ns: int) -> None:
        """Forget the shard's entries whose ticks are all before ``before_ns``."""
        ...

    def clear(self, shards: int) -> None:
        """Forget everything (a new run: nothing before it is to be replayed)."""
        ...


class MemoryJournal:
    """A :class:`TickJournal` in the feed's memory, bounded to :data:`MAX_JOURNAL_TICKS`."""

    durable = False

    def __init__(self, max_ticks: int = MAX_JOURNAL_TICKS) -> None:
        self.max_ticks = max_ticks
        self.entries: dict[int, list[tuple[TickBatch, BarBatch]]] = {}
        self.ticks: dict[int, int] = {}  # per shard, what its entries hold
        self.dropped_ticks = 0

    def append(self, parts: Mapping[int, tuple[TickBatch, BarBatch]]) -> bool:
        for k, (ticks, bars) in parts.items():
            if not (len(ticks) or len(bars)):
                continue
            kept = self.entries.setdefault(k, [])
            kept.append((ticks, bars))
            self.ticks[k] = self.ticks.get(k, 0) + len(ticks)
            while self.ticks[k] > self.max_ticks and len(kept) > 1:
                self.dropped_ticks += self._drop_oldest(k)
        return True

    def _drop_oldest(self, k: int) -> int:
        dropped = len(self.entries[k].pop(0)[0])
        self.ticks[k] -= dropped
        return dropped

    def read(self, shard: int, since_ns: int) -> tuple[TickBatch, BarBatch]:
        kept = self.entries.get(shard, [])
        ticks = TickBatch.concat([t for t, _ in kept])
        bars = BarBatch.concat([b for _, b in kept])
        return ticks.take(ticks.ts_ns >= since_ns), bars.take(bars.ts_ns >= since_ns)

    def prune(self, shard: int, before_ns: int) -> None:
        kept = self.entries.get(shard)
        while kept and len(kept[0][0]) and int(kept[0][0].ts_ns.max()) < before_ns:
            self._drop_oldest(shard)

    def clear(self, shards: int) -> None:
        self.entries.clear()
        self.ticks.clear()


def journal_from_settings(settings: Settings) -> TickJournal:
    """Redis when ``redis_url`` is set (it survives the feed's node), else memory."""
    if not settings.redis_url:
        return MemoryJournal()
    from market.cache.tick_journal import RedisJournal  # noqa: PLC0415 - only with Redis

    return RedisJournal(settings.redis_url)
