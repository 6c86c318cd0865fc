"""Route a feed's batches to the shards that own them (no Ray here).

Each period's :class:`FeedBatch` is split by shard and sent as one call per shard; a
shard's next batch waits for its previous call (backpressure), so a slow shard makes the
feed's batches bigger instead of queueing without bound. When a shard answers with a new
incarnation id (it was restarted), the router sends it the warm-up history and current
chains again, then asks it to restore what it closed since this feed started.

A call that fails (the shard's actor or node died) does not lose its ticks: the router
keeps, per shard, the stock ticks and bars routed since the start of the minute of the
newest tick the shard acknowledged, and sends that shard nothing more until a probe call
answers. A restarted shard then gets the warm-up, its history (closed minutes) and the
kept ticks (the minute it was forming and everything since), so its bars are the same as
if it had never stopped; a shard that answers as the same incarnation gets the ticks its
failed calls carried.

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
                 "restored_bars", "replayed_ticks", "replay_dropped_ticks")
# Ticks kept per shard for a replay at most (an outage longer than this loses the oldest).
MAX_REPLAY_TICKS = 2_000_000


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
        # Replay state per shard: parts routed since the acknowledged minute, the newest
        # tick time of the call in flight and of the last acknowledged one, shards whose
        # last call failed.
        self.kept: dict[int, list[tuple[TickBatch, BarBatch]]] = {}
        self.in_flight_ns: dict[int, int] = {}
        self.acked_ns: dict[int, int] = {}
        self.down: set[int] = set()
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
            previous = self.pending.pop(k, None)
            if previous is not None:
                await self.settle(k, previous)
            if not warmup:
                self._keep(k, ticks, bars)
            if k in self.down:
                await self.recover(k)  # sends the kept ticks, this batch's among them
                continue
            if len(ticks):
                self.in_flight_ns[k] = int(ticks.ts_ns.max())
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
            self.down.add(k)
            log.warning("shard %d call failed (%s); its ticks are kept for a replay", k,
                        type(exc).__name__)
            return
        if k in self.in_flight_ns:
            self.acked_ns[k] = self.in_flight_ns[k]
            self._prune(k)
        incarnation = result["incarnation"]
        known = self.incarnations.get(k)
        self.incarnations[k] = incarnation
        if known is not None and known != incarnation:
            await self.reseed(k)

    def _keep(self, k: int, ticks: TickBatch, bars: BarBatch) -> None:
        if not (len(ticks) or len(bars)):
            return
        kept = self.kept.setdefault(k, [])
        kept.append((ticks, bars))
        excess = sum(len(t) for t, _ in kept) - MAX_REPLAY_TICKS
        while excess > 0 and len(kept) > 1:
            dropped = kept.pop(0)
            excess -= len(dropped[0])
            self.counters["replay_dropped_ticks"] += len(dropped[0])

    def _replay_from(self, k: int) -> int:
        """Start of the minute of shard ``k``'s newest acknowledged tick: it had closed, and
        written to its history, every minute before it."""
        return self.acked_ns.get(k, 0) // NS_PER_MINUTE * NS_PER_MINUTE

    def _prune(self, k: int) -> None:
        since = self._replay_from(k)
        kept = self.kept.get(k)
        while kept and len(kept[0][0]) and int(kept[0][0].ts_ns.max()) < since:
            kept.pop(0)

    async def recover(self, k: int) -> bool:
        """Probe shard ``k`` after a failed call; when it answers, re-seed it if it is a new
        incarnation, then send it the kept ticks. False while it is still unreachable."""
        try:
            result = await self.shards[k].ingest(None, None, None, None, False)
        except self.call_errors:
            self.counters["shard_errors"] += 1
            return False
        self.down.discard(k)
        incarnation = result["incarnation"]
        restarted = self.incarnations.get(k) not in (None, incarnation)
        self.incarnations[k] = incarnation
        if restarted:
            await self.reseed(k)
            since = self._replay_from(k)  # the old incarnation's forming minute on
        else:
            since = self.acked_ns.get(k, -1) + 1  # only what the failed calls carried
        kept = self.kept.get(k, [])
        ticks = TickBatch.concat([t for t, _ in kept])
        ticks = ticks.take(ticks.ts_ns >= since)
        bars = BarBatch.concat([b for _, b in kept])
        bars = bars.take(bars.ts_ns >= since)
        if len(ticks) or len(bars):
            await self.shards[k].ingest(ticks, None, bars, None, False)
            self.counters["replayed_ticks"] += len(ticks)
            if len(ticks):
                self.acked_ns[k] = int(ticks.ts_ns.max())
                self._prune(k)
        return True

    async def reseed(self, k: int) -> None:
        """Send restarted shard ``k`` the warm-up and chains, then restore its own history."""
        self.counters["reseeds"] += 1
        log.warning("shard %d restarted; re-seeding history and chains", k,
                    extra={"event": "shard.reseeded", "shard": k})
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
