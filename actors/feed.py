"""The feed actor: runs one feed, routes each batch to the shards that own it.

One upstream connection per feed lives here (Alpaca refuses a second one).
Each period's :class:`FeedBatch` is split by shard and sent as one call per
shard; a shard's next batch waits for its previous call (backpressure), so a
slow shard makes the feed's batches bigger instead of queueing without bound.
When a shard answers with a new incarnation id (Ray restarted it), the feed
sends it the warm-up history and current chains again before live data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.sharding import shard_index_array, shard_of
from market.feeds import make_feed
from market.feeds.base import NS_PER_MINUTE, BarBatch, Feed, FeedBatch, OptionContracts
from market.feeds.recorder import TickRecorder, recorder_from_settings
from market.settings import Settings

log = logging.getLogger("marketray.feed")


@ray.remote(max_restarts=-1, num_cpus=0)
class FeedActor:
    """Owns the feed and the routing of its batches."""

    def __init__(self, settings: dict[str, Any], shards: Sequence[ActorHandle]) -> None:
        self.settings = Settings(**settings)
        self.shards = list(shards)
        self.feed: Feed = make_feed(self.settings)
        self.universe = tuple(self.feed.symbols)
        # Every batch the system ingests goes to Parquet when MARKETRAY_RECORD is on.
        self.recorder: TickRecorder | None = recorder_from_settings(self.settings)
        self.shard_of_id = shard_index_array(self.universe, len(self.shards))
        self.warm_bars = BarBatch.empty()
        self.chains: dict[str, OptionContracts] = {}
        self.incarnations: dict[int, str] = {}
        self.pending: dict[int, ray.ObjectRef[Any]] = {}
        self.counters = {"batches": 0, "ticks": 0, "option_ticks": 0, "bars": 0,
                         "shard_errors": 0, "reseeds": 0, "restored_bars": 0}
        self.last_batch_wall = 0.0
        self.started_ns = time.time_ns()  # bars closed after this are this run's own
        self.started = asyncio.Event()
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._interest: set[str] = set()

    async def start(self) -> dict[str, Any]:
        """Warm the shards up and start streaming (idempotent)."""
        if self._task is None:
            warm = await self.feed.warmup()
            if self.recorder is not None:
                self.recorder.write(warm, self.universe, warmup=True)
            self.warm_bars = warm.bars
            self.chains.update(warm.chains)
            await self._route(warm, warmup=True)
            await self.flush()  # return once every shard holds the warm-up, not just sent it
            self._task = asyncio.get_running_loop().create_task(self._run())
            self.started.set()
        return {"symbols": len(self.universe), "warm_bars": len(self.warm_bars)}

    async def _run(self) -> None:
        try:
            async for batch in self.feed.stream():
                if self.recorder is not None:
                    self.recorder.write(batch, self.universe)
                self.chains.update(batch.chains)
                await self._route(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the actor alive and visible on /health
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("feed stopped")

    def _parts(self, batch: FeedBatch, k: int) -> tuple[Any, ...]:
        ticks = batch.ticks.take(self.shard_of_id[batch.ticks.symbol_id] == k)
        options = batch.option_ticks.take(self.shard_of_id[batch.option_ticks.symbol_id] == k)
        bars = batch.bars.take(self.shard_of_id[batch.bars.symbol_id] == k)
        return ticks, options, bars

    def _chains_of(self, chains: dict[str, OptionContracts], k: int
                   ) -> dict[str, OptionContracts] | None:
        """The chains of the underlyings shard ``k`` owns (None when there are none)."""
        owned = {u: c for u, c in chains.items() if shard_of(u, len(self.shards)) == k}
        return owned or None

    async def _route(self, batch: FeedBatch, *, warmup: bool = False) -> None:
        for k, shard in enumerate(self.shards):
            ticks, options, bars = self._parts(batch, k)
            chains = self._chains_of(batch.chains, k) if batch.chains else None
            if not (len(ticks) or len(options) or len(bars) or chains):
                continue
            previous = self.pending.get(k)
            if previous is not None:
                await self._settle(k, previous)
            self.pending[k] = shard.ingest.remote(ticks, options, bars, chains, warmup)
        self.counters["batches"] += 1
        self.counters["ticks"] += len(batch.ticks)
        self.counters["option_ticks"] += len(batch.option_ticks)
        self.counters["bars"] += len(batch.bars)
        self.last_batch_wall = time.time()

    async def _settle(self, k: int, ref: ray.ObjectRef[Any]) -> None:
        """Wait for shard ``k``'s previous call; re-seed it if it was restarted."""
        try:
            result = await ref
        except ray.exceptions.RayError as exc:
            self.counters["shard_errors"] += 1
            log.warning("shard %d call failed (%s); its batch is dropped", k, type(exc).__name__)
            return
        incarnation = result["incarnation"]
        known = self.incarnations.get(k)
        self.incarnations[k] = incarnation
        if known is not None and known != incarnation:
            self.counters["reseeds"] += 1
            log.warning("shard %d restarted; re-seeding history and chains", k)
            bars = self.warm_bars.take(self.shard_of_id[self.warm_bars.symbol_id] == k)
            await self.shards[k].ingest.remote(None, None, bars, self._chains_of(self.chains, k),
                                               True)
            # Then what it closed since this feed started, from its history store.
            newest_warm = int(bars.ts_ns.max()) + 1 if len(bars) else 0
            since = max(newest_warm, self.started_ns // NS_PER_MINUTE * NS_PER_MINUTE)
            try:
                self.counters["restored_bars"] += await self.shards[k].restore_history.remote(since)
            except Exception as exc:  # an unreadable history file: serve from the warm-up
                log.warning("shard %d could not restore its history: %s", k, exc)

    async def flush(self) -> None:
        """Wait until every shard has applied what was sent to it."""
        for k, ref in list(self.pending.items()):
            await self._settle(k, ref)
        self.pending.clear()

    async def set_interest(self, symbols: list[str]) -> None:
        """Pass the symbols clients subscribed to on to feeds that care (Alpaca)."""
        self._interest = set(symbols)
        hook = getattr(self.feed, "set_interest", None)
        if hook is not None:
            await hook(self._interest)

    async def status(self) -> dict[str, Any]:
        """Feed health and routing counters."""
        st = self.feed.status()
        return {
            "name": st.name, "connected": st.connected, "last_message_ns": st.last_message_ns,
            "messages": st.messages, "dropped": st.dropped, "error": self.error or st.error,
            "detail": st.detail, "running": self._task is not None and not self._task.done(),
            "seconds_since_batch": (time.time() - self.last_batch_wall
                                    if self.last_batch_wall else None),
            "recorded": None if self.recorder is None else self.recorder.rows_written,
            **self.counters,
        }

    async def stop(self) -> None:
        """Stop streaming and close the feed."""
        if self._task is not None:
            self._task.cancel()
        await self.feed.close()
        if self.recorder is not None:
            self.recorder.close()  # finalises the Parquet files
