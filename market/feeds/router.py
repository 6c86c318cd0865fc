"""Route a feed's batches to the shards that own them (no Ray here).

Each period's :class:`FeedBatch` is split by shard and sent as one call per shard; a
shard's next batch waits for its previous call (backpressure), so a slow shard makes the
feed's batches bigger instead of queueing without bound. When a shard answers with a new
incarnation id (it was restarted), the router sends it the warm-up history and current
chains again, then asks it to restore what it closed since the run started.

A shard's state is its history store (each minute written as it closes) plus the ticks of
the minute it is forming. The second part is what a lost node takes with it, so every
streamed part is written to a :class:`~market.feeds.journal.TickJournal` before it is sent,
and kept there until the shard acknowledges a tick of a later minute. After a failed call
the shard gets nothing until a probe answers; then (new incarnation) the warm-up, its
history and the journal's ticks from the minute it was forming, or (same incarnation) the
journal's ticks it has not applied. A feed that restarts itself (:meth:`FeedRouter.resume`)
does the same for every shard from a journal that outlived it (Redis), so the bars are the
same as if nothing had stopped, up to the ticks the lost feed never received.

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
from market.feeds.journal import MemoryJournal, TickJournal
from market.sharding import shard_index_array, shard_of

log = logging.getLogger("marketray.feed")

COUNTER_NAMES = ("batches", "ticks", "option_ticks", "bars", "shard_errors", "reseeds",
                 "restored_bars", "replayed_ticks", "replay_dropped_ticks", "journal_errors",
                 "resumes")


class ShardLink(Protocol):
    """One shard as the router sees it.

    The methods must send the call when invoked (not when awaited): the router keeps
    one call per shard in flight while it routes to the others.
    """

    def ingest(self, ticks: TickBatch | None, option_ticks: OptionTickBatch | None,
               bars: BarBatch | None, chains: Mapping[str, OptionContracts] | None,
               warmup: bool, expect: str | None) -> Awaitable[Mapping[str, Any]]:
        """:meth:`market.shard.Shard.ingest`; ``expect`` fences off a restarted shard."""
        ...

    def restore_history(self, since_ns: int) -> Awaitable[int]: ...

    def replay(self, ticks: TickBatch, bars: BarBatch) -> Awaitable[int]: ...


class FeedRouter:
    """Split feed batches by owning shard, one call in flight per shard.

    ``universe`` is the feed's symbol list (``symbol_id`` indexes it). A failed call
    whose exception is one of ``call_errors`` (the transport's: a dead actor) is counted
    in ``shard_errors``; its ticks and bars stay in the journal for the shard's replay, its
    option ticks are dropped (a re-seed sends the chains). Any other exception propagates.
    ``started_ns`` (epoch ns) is when the run started (the first feed's start, also after
    the feed restarted): a restarted shard restores its history from that minute on.
    ``journal`` keeps the ticks for replays (default: in this process).
    """

    def __init__(self, universe: Sequence[str], shards: Sequence[ShardLink], *,
                 started_ns: int | None = None,
                 call_errors: tuple[type[BaseException], ...] = (),
                 wall_clock: Callable[[], float] = time.time,
                 journal: TickJournal | None = None) -> None:
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
        self.journal: TickJournal = MemoryJournal() if journal is None else journal
        # Replay state per shard: the newest tick time of the call in flight and of the
        # last acknowledged one, shards whose last call failed, shards whose state since
        # the run started is unknown (this feed restarted and has not reached them yet).
        self.in_flight_ns: dict[int, int] = {}
        self.acked_ns: dict[int, int] = {}
        self.down: set[int] = set()
        self.unseeded: set[int] = set()
        self.has_run_data: dict[int, bool] = {}  # from each shard's last answer
        self.last_batch_wall = 0.0

    async def warm_up(self, batch: FeedBatch, *, resume: bool = False) -> None:
        """Send the warm-up history and chains; return once every shard has applied it.

        ``resume``: this feed restarted mid-run; every shard is brought up to the last
        routed tick (:meth:`resume`) before it gets the warm-up's quotes, which are newer
        than the journal's ticks.
        """
        self.warm_bars = batch.bars
        self.chains.update(batch.chains)
        if not resume:
            await self.route(batch, warmup=True)
            await self.flush()
            return
        await self.route(FeedBatch(TickBatch.empty(), batch.option_ticks, batch.bars,
                                   batch.chains), warmup=True)
        await self.flush()
        await self.resume()
        await self.route(FeedBatch(batch.ticks, OptionTickBatch.empty(), BarBatch.empty(), {}),
                         warmup=True)
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
        """Journal each shard's part of ``batch``, then send it after the shard's previous
        call has settled."""
        parts = {k: self.parts(batch, k) for k in range(len(self.shards))}
        if not warmup:
            self._journal({k: (ticks, bars) for k, (ticks, _, bars) in parts.items()})
        for k, shard in enumerate(self.shards):
            ticks, options, bars = parts[k]
            chains = self.chains_of(batch.chains, k) if batch.chains else None
            if not (len(ticks) or len(options) or len(bars) or chains):
                continue
            previous = self.pending.pop(k, None)
            replayed = previous is not None and await self.settle(k, previous)
            if k in self.down or k in self.unseeded:
                replayed = await self.recover(k)
                if not replayed:
                    continue
            if replayed and not warmup:  # the journal's ticks, this batch's among them, went
                ticks, bars = TickBatch.empty(), BarBatch.empty()
                if not (len(options) or chains):
                    continue
            if len(ticks):
                self.in_flight_ns[k] = int(ticks.ts_ns.max())
            self.pending[k] = shard.ingest(ticks, options, bars, chains, warmup,
                                           self.incarnations.get(k))
        self.counters["batches"] += 1
        self.counters["ticks"] += len(batch.ticks)
        self.counters["option_ticks"] += len(batch.option_ticks)
        self.counters["bars"] += len(batch.bars)
        self.last_batch_wall = self.wall_clock()

    async def settle(self, k: int, call: Awaitable[Mapping[str, Any]]) -> bool:
        """Wait for shard ``k``'s call; re-seed the shard and replay the journal to it if it
        answers as a new incarnation. True when it replayed (the journal up to now)."""
        try:
            result = await call
        except self.call_errors as exc:
            self.counters["shard_errors"] += 1
            self.down.add(k)
            log.warning("shard %d call failed (%s); its ticks stay journaled for a replay", k,
                        type(exc).__name__)
            return False
        incarnation = result["incarnation"]
        known = self.incarnations.get(k)
        self.incarnations[k] = incarnation
        self.has_run_data[k] = bool(result.get("has_run_data", True))
        if k in self.in_flight_ns and not result.get("refused"):
            self.acked_ns[k] = self.in_flight_ns[k]
            self._prune(k)
        if known is not None and known != incarnation:
            try:
                await self.reseed(k)
                await self.replay(k)  # a restart between two calls lost its forming minute
            except self.call_errors:
                self.counters["shard_errors"] += 1
                self.down.add(k)
                return False
            return True
        return False

    def _journal(self, parts: Mapping[int, tuple[TickBatch, BarBatch]]) -> None:
        if not self.journal.append(parts):
            self.counters["journal_errors"] += 1
        self.counters["replay_dropped_ticks"] = getattr(self.journal, "dropped_ticks", 0)

    def _replay_from(self, k: int) -> int:
        """Start of the minute of shard ``k``'s newest acknowledged tick: it had closed, and
        written to its history, every minute before it."""
        return self.acked_ns.get(k, 0) // NS_PER_MINUTE * NS_PER_MINUTE

    def _prune(self, k: int) -> None:
        if k in self.acked_ns:
            self.journal.prune(k, self._replay_from(k))

    async def recover(self, k: int) -> bool:
        """Probe shard ``k`` after a failed call (or a restart of this feed); when it
        answers, re-seed it if it is a new incarnation (or its state is unknown), then send
        it the journal's ticks. False while it is still unreachable."""
        try:
            result = await self.shards[k].ingest(None, None, None, None, False, None)
        except self.call_errors:
            self.counters["shard_errors"] += 1
            return False
        incarnation = result["incarnation"]
        restarted = self.incarnations.get(k) not in (None, incarnation)
        self.incarnations[k] = incarnation
        try:
            if restarted or k in self.unseeded:
                await self.reseed(k)
            await self.replay(k)
        except self.call_errors:  # it died again: probe again with the next batch
            self.counters["shard_errors"] += 1
            return False
        self.down.discard(k)
        return True

    async def replay(self, k: int) -> None:
        """Send shard ``k`` the journal's ticks from the minute it was forming on; it
        applies those newer than what it holds (a restarted shard holds its history)."""
        ticks, bars = self.journal.read(k, self._replay_from(k))
        if len(ticks) or len(bars):
            self.counters["replayed_ticks"] += await self.shards[k].replay(ticks, bars)
            if len(ticks):
                self.acked_ns[k] = max(self.acked_ns.get(k, 0), int(ticks.ts_ns.max()))
                self._prune(k)
        self.unseeded.discard(k)

    async def resume(self) -> None:
        """Bring every shard up to date after this feed restarted (call after
        :meth:`warm_up`): a shard that holds only the warm-up (it restarted too) restores
        the minutes it closed since the run started; every shard then gets the journal's
        ticks it has not applied. A shard that cannot be reached (or did not answer the
        warm-up) is marked down and brought up, with its history, when it answers."""
        self.counters["resumes"] += 1
        self.unseeded = set(range(len(self.shards)))
        for k in range(len(self.shards)):
            if k in self.down or k not in self.has_run_data:
                self.down.add(k)  # probed with the next batch, then re-seeded (unseeded)
                continue
            try:
                if not self.has_run_data[k]:
                    await self._restore(k)
                await self.replay(k)
            except self.call_errors as exc:
                self.counters["shard_errors"] += 1
                self.down.add(k)
                log.warning("shard %d unreachable after the feed restarted (%s)", k,
                            type(exc).__name__)

    async def reseed(self, k: int) -> None:
        """Send restarted shard ``k`` the warm-up and chains, then restore its own history."""
        self.counters["reseeds"] += 1
        log.warning("shard %d restarted; re-seeding history and chains", k,
                    extra={"event": "shard.reseeded", "shard": k})
        bars = self.warm_bars.take(self.shard_of_id[self.warm_bars.symbol_id] == k)
        await self.shards[k].ingest(None, None, bars, self.chains_of(self.chains, k), True,
                                    None)
        await self._restore(k)

    async def _restore(self, k: int) -> None:
        """Have shard ``k`` load what it closed since the run started from its history
        store: the streamed bars, which win over warm-up bars of the same minutes."""
        since = self.started_ns // NS_PER_MINUTE * NS_PER_MINUTE
        try:
            self.counters["restored_bars"] += await self.shards[k].restore_history(since)
        except self.call_errors:
            raise
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
