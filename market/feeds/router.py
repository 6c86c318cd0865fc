"""Route a feed's batches to the shards that own them (no Ray here).

Each period's :class:`FeedBatch` is split by shard and sent as one call per shard; a
shard's next batch waits for its previous call (backpressure), so a slow shard makes the
feed's batches bigger instead of queueing without bound. When a shard answers with a new
incarnation id (it was restarted), the router sends it the warm-up history and current
chains again, then asks it to restore what it closed since this feed started.

The shards are reached through :class:`ShardLink`: the Ray layer adapts actor handles
to it, unit tests pass in-process fakes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from market.feeds.base import (
    NS_PER_MINUTE,
    BarBatch,
    FeedBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.sharding import shard_index_array, shard_of

log = logging.getLogger("marketray.feed")

COUNTER_NAMES = ("batches", "ticks", "option_ticks", "bars", "shard_errors", "reseeds",
                 "restored_bars")


class ShardLink(Protocol):
    """One shard as the router sees it.

    Both methods must send the call when invoked (not when awaited): the router keeps
    one call per shard in flight while it routes to the others.
    """

    def ingest(self, ticks: TickBatch | None, option_ticks: OptionTickBatch | None,
               bars: BarBatch | None, chains: Mapping[str, OptionContracts] | None,
               warmup: bool) -> Awaitable[Mapping[str, Any]]: ...

    def restore_history(self, since_ns: int) -> Awaitable[int]: ...


class FeedRouter:
    """Split feed batches by owning shard, one call in flight per shard.

    ``universe`` is the feed's symbol list (``symbol_id`` indexes it). A failed call
    whose exception is one of ``call_errors`` (the transport's: a dead actor) is counted
    in ``shard_errors`` and its batch dropped; any other exception propagates.
    ``started_ns`` (epoch ns) bounds what a restarted shard restores from its history.
    """

    def __init__(self, universe: Sequence[str], shards: Sequence[ShardLink], *,
                 started_ns: int | None = None,
                 call_errors: tuple[type[BaseException], ...] = (),
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.universe = tuple(universe)
        self.shards = list(shards)
        self.shard_of_id = shard_index_array(self.universe, len(self.shards))
        self.call_errors = call_errors
        self.wall_clock = wall_clock
        self.started_ns = time.time_ns() if started_ns is None else started_ns
        self.warm_bars = BarBatch.empty()
        self.chains: dict[str, OptionContracts] = {}
        self.incarnations: dict[int, str] = {}
        self.pending: dict[int, Awaitable[Mapping[str, Any]]] = {}
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.last_batch_wall = 0.0

    async def warm_up(self, batch: FeedBatch) -> None:
        """Send the warm-up history and chains; return once every shard has applied it."""
        self.warm_bars = batch.bars
        self.chains.update(batch.chains)
        await self.route(batch, warmup=True)
        await self.flush()

    async def forward(self, batch: FeedBatch) -> None:
        """Send one streamed batch (waits only for the previous call of a shard it feeds)."""
        self.chains.update(batch.chains)
        await self.route(batch)

    def parts(self, batch: FeedBatch, k: int) -> tuple[TickBatch, OptionTickBatch, BarBatch]:
        """The ticks, option ticks and bars of ``batch`` that shard ``k`` owns."""
        owner = self.shard_of_id
        return (batch.ticks.take(owner[batch.ticks.symbol_id] == k),
                batch.option_ticks.take(owner[batch.option_ticks.symbol_id] == k),
                batch.bars.take(owner[batch.bars.symbol_id] == k))

    def chains_of(self, chains: Mapping[str, OptionContracts], k: int
                  ) -> dict[str, OptionContracts] | None:
        """The chains of the underlyings shard ``k`` owns (None when there are none)."""
        owned = {u: c for u, c in chains.items() if shard_of(u, len(self.shards)) == k}
        return owned or None

    async def route(self, batch: FeedBatch, *, warmup: bool = False) -> None:
        """Send each shard its part of ``batch`` after its previous call has settled."""
        for k, shard in enumerate(self.shards):
            ticks, options, bars = self.parts(batch, k)
            chains = self.chains_of(batch.chains, k) if batch.chains else None
            if not (len(ticks) or len(options) or len(bars) or chains):
                continue
            previous = self.pending.get(k)
            if previous is not None:
                await self.settle(k, previous)
            self.pending[k] = shard.ingest(ticks, options, bars, chains, warmup)
        self.counters["batches"] += 1
        self.counters["ticks"] += len(batch.ticks)
        self.counters["option_ticks"] += len(batch.option_ticks)
        self.counters["bars"] += len(batch.bars)
        self.last_batch_wall = self.wall_clock()

    async def settle(self, k: int, call: Awaitable[Mapping[str, Any]]) -> None:
        """Wait for shard ``k``'s call; re-seed the shard if it answers as a new incarnation."""
        try:
            result = await call
        except self.call_errors as exc:
            self.counters["shard_errors"] += 1
            log.warning("shard %d call failed (%s); its batch is dropped", k, type(exc).__name__)
            return
        incarnation = result["incarnation"]
        known = self.incarnations.get(k)
        self.incarnations[k] = incarnation
        if known is not None and known != incarnation:
            await self.reseed(k)

    async def reseed(self, k: int) -> None:
        """Send restarted shard ``k`` the warm-up and chains, then restore its own history."""
        self.counters["reseeds"] += 1
        log.warning("shard %d restarted; re-seeding history and chains", k)
        bars = self.warm_bars.take(self.shard_of_id[self.warm_bars.symbol_id] == k)
        await self.shards[k].ingest(None, None, bars, self.chains_of(self.chains, k), True)
        # Then what it closed since this feed started, from its history store.
        newest_warm = int(bars.ts_ns.max()) + 1 if len(bars) else 0
        since = max(newest_warm, self.started_ns // NS_PER_MINUTE * NS_PER_MINUTE)
        try:
            self.counters["restored_bars"] += await self.shards[k].restore_history(since)
        except Exception as exc:  # an unreadable history file: serve from the warm-up
            log.warning("shard %d could not restore its history: %s", k, exc)

    async def flush(self) -> None:
        """Wait until every shard has applied what was sent to it."""
        for k, call in list(self.pending.items()):
            await self.settle(k, call)
        self.pending.clear()

    def seconds_since_batch(self) -> float | None:
        """Wall seconds since the last routed batch; None before the first."""
        return self.wall_clock() - self.last_batch_wall if self.last_batch_wall else None
