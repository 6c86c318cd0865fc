"""The feed actor: a thin Ray shell around :class:`market.feeds.runner.FeedRunner`.

Routing, backpressure and the re-seeding of restarted shards live in
:class:`market.feeds.router.FeedRouter`; this module adapts shard actor handles to its
:class:`~market.feeds.router.ShardLink` and lets Ray restart the actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.actor import ActorHandle

from actors import telemetry
from core.settings import Settings
from market.feeds import make_feed
from market.feeds.base import BarBatch, OptionContracts, OptionTickBatch, TickBatch
from market.feeds.journal import journal_from_settings
from market.feeds.recorder import recorder_from_settings
from market.feeds.router import FeedRouter
from market.feeds.runner import FeedRunner


class ActorShardLink:
    """A shard actor handle as a :class:`ShardLink` (``.remote`` sends at once)."""

    def __init__(self, handle: ActorHandle) -> None:
        self.handle = handle

    def ingest(self, ticks: TickBatch | None, option_ticks: OptionTickBatch | None,
               bars: BarBatch | None, chains: Mapping[str, OptionContracts] | None,
               warmup: bool, expect: str | None) -> Any:
        return self.handle.ingest.remote(ticks, option_ticks, bars, chains, warmup, expect)

    def restore_history(self, since_ns: int) -> Any:
        return self.handle.restore_history.remote(since_ns)

    def replay(self, ticks: TickBatch, bars: BarBatch) -> Any:
        return self.handle.replay.remote(ticks, bars)


@ray.remote(max_restarts=-1, num_cpus=0)
class FeedActor:
    """Owns the feed and the routing of its batches.

    ``started_ns`` is when the run started; Ray passes the same value to a re-created
    actor, so a restarted feed restores the shards' history from the run's start.
    """

    def __init__(self, settings: dict[str, Any], shards: Sequence[ActorHandle],
                 started_ns: int | None = None) -> None:
        self.settings = Settings(**settings)
        feed = make_feed(self.settings)
        journal = journal_from_settings(self.settings)
        reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        if not reconstructed:
            journal.clear(len(shards))  # a new run: nothing before it is to be replayed
        router = FeedRouter(feed.symbols, [ActorShardLink(s) for s in shards],
                            started_ns=started_ns, call_errors=(ray.exceptions.RayError,),
                            journal=journal)
        self.runner = FeedRunner(feed, router, recorder_from_settings(self.settings))
        # Re-created by Ray (its node died, or it crashed): nobody calls start() again, so
        # it starts itself, warms the shards up and brings them up to the last routed tick.
        self._restart: asyncio.Task[dict[str, Any]] | None = None
        if reconstructed:
            self._restart = asyncio.get_running_loop().create_task(
                self.runner.start(resume=True))
        self._waiting_avg = 0.0
        telemetry.on_flush(telemetry.FeedCollector(self._status, telemetry.recorder()))

    async def start(self) -> dict[str, Any]:
        if self._restart is not None:
            await self._restart  # one warm-up, not two
        return await self.runner.start()

    async def flush(self) -> None:
        await self.runner.router.flush()

    async def set_interest(self, symbols: list[str]) -> None:
        await self.runner.set_interest(symbols)

    async def status(self) -> dict[str, Any]:
        return {**self._status(), "process": telemetry.process_usage()}

    def _status(self) -> dict[str, Any]:
        """The runner's status, and which shards still apply their previous batch."""
        pending = self.runner.router.pending
        waiting: list[int] = []
        if pending:
            refs = list(pending.values())
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            done = set(ready)
            waiting = sorted(k for k, ref in pending.items() if ref not in done)
        shards = len(self.runner.router.shards)
        # One sample catches a call in flight most of the time; the average over the
        # samples (each export and /health) shows a feed that keeps waiting.
        self._waiting_avg = 0.8 * self._waiting_avg + 0.2 * len(waiting) / max(1, shards)
        return {**self.runner.status(), "shards": shards, "shards_waiting": waiting,
                "shards_waiting_avg": round(self._waiting_avg, 3)}

    async def stop(self) -> None:
        await self.runner.stop()
