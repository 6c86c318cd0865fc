"""The shard actor: a thin Ray wrapper around :class:`market.shard.Shard`.

It is an async actor so that reads interleave with ingest calls in one event
loop; every method is short and CPU-bound work happens in numba kernels. The
market stream's fetch may wait here for the next ingest (a long poll), so a
frame goes out as soon as its ticks land, not at the stream's next poll.
Ray restarts it after a crash (``max_restarts=-1``); the new incarnation
reports a new id from :meth:`ingest` and the feed actor re-seeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from actors import telemetry
from core.settings import Settings
from market.feeds.base import BarBatch, OptionContracts, OptionTickBatch, TickBatch
from market.shard import ChainFilter, Shard, ShardConfig


def shard_config(settings: Settings) -> ShardConfig:
    """The shard tuning that follows from the service settings."""
    return ShardConfig(rate=settings.risk_free_rate, dividend_yield=settings.dividend_yield,
                       bar_capacity=settings.bar_history,
                       history_dir=settings.storage("history"))


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class ShardActor:
    """Holds one :class:`Shard`; each method passes a message to it."""

    def __init__(self, symbols: Sequence[str], universe: Sequence[str],
                 config: ShardConfig) -> None:
        self.shard = Shard(symbols, universe, config)
        self._ingested = asyncio.Event()  # set, then replaced, by every ingest
        name = ray.get_runtime_context().get_actor_name() or ""
        self.metrics = telemetry.ShardMetrics(self.shard, name.rsplit("-", 1)[-1],
                                              telemetry.recorder())
        telemetry.on_flush(self.metrics)

    async def ingest(self, ticks: TickBatch | None, option_ticks: OptionTickBatch | None,
                     bars: BarBatch | None,
                     chains: Mapping[str, OptionContracts] | None, warmup: bool = False,
                     expect: str | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        result = self.shard.ingest(ticks, option_ticks, bars, chains, warmup=warmup,
                                   expect=expect)
        self.metrics.ingested(result, 0 if option_ticks is None else len(option_ticks),
                              time.perf_counter() - started)
        self._ingested.set()  # wakes the fetches waiting for this batch
        self._ingested = asyncio.Event()
        return result

    async def restore_history(self, since_ns: int) -> int:
        return self.shard.restore_history(since_ns)

    async def replay(self, ticks: TickBatch, bars: BarBatch) -> int:
        applied = self.shard.replay(ticks, bars)
        self._ingested.set()  # as after an ingest: the stream shows the replayed minute
        self._ingested = asyncio.Event()
        return applied

    async def snapshot(self, symbol: str) -> dict[str, Any]:
        return self.shard.snapshot(symbol)

    async def snapshots(self, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self.shard.snapshots(symbols)

    async def bars(self, symbol: str, limit: int, include_forming: bool = False
                   ) -> list[dict[str, Any]]:
        return self.shard.bars(symbol, limit, include_forming)

    async def chain_json(self, symbol: str, flt: ChainFilter) -> bytes:
        return self.shard.chain_json(symbol, flt)

    async def chain_arrays(self, symbol: str) -> dict[str, Any]:
        return self.shard.chain_arrays(symbol)

    async def market_changes(self, since: int, symbols: Sequence[str],
                             first: Sequence[str] = (), limit: int | None = None,
                             wait_s: float = 0.0) -> tuple[int, list[str], dict[str, Any]]:
        """:meth:`Shard.market_changes`; a caller that has seen every change (``since``
        is the newest sequence) first waits up to ``wait_s`` for the next ingest."""
        if wait_s > 0 and self.shard.sequence <= since:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ingested.wait(), wait_s)
        return self.shard.market_changes(since, symbols, first, limit)

    async def chain_versions(self, symbols: Sequence[str]) -> dict[str, int]:
        return self.shard.chain_versions(symbols)

    async def stats(self) -> dict[str, Any]:
        return {**self.shard.stats(), "process": telemetry.process_usage()}

    async def flush_history(self) -> None:
        self.shard.flush_history()
