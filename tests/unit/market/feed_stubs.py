"""In-process shards and hand-made feed batches for the feed router and runner tests."""

import asyncio

import numpy as np

from market.feeds.base import (
    NS_PER_MINUTE,
    QUOTE,
    TRADE,
    BarBatch,
    FeedBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
    occ_symbol,
)
from market.shard import Shard, ShardConfig
from market.sharding import partition, shard_of

UNIVERSE = ("AAPL", "MSFT", "SPY", "TSLA")
NUM_SHARDS = 3  # with these four tickers shard 2 owns none of them
T0 = 1_764_000_000 // 60 * 60 * 1_000_000_000  # a minute boundary, epoch ns


class ShardStub:
    """A ShardLink around a real Shard; the call is sent (scheduled) when made."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.calls: list[tuple] = []
        self.restores: list[int] = []
        self.replays: list[int] = []  # ticks applied by each replay
        self.gate: asyncio.Event | None = None
        self.fail_with: BaseException | None = None
        self.restore_error: BaseException | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    def ingest(self, ticks, option_ticks, bars, chains, warmup, expect=None):
        self.calls.append((ticks, option_ticks, bars, chains, warmup))
        return asyncio.ensure_future(self._ingest(ticks, option_ticks, bars, chains, warmup,
                                                  expect))

    async def _ingest(self, ticks, option_ticks, bars, chains, warmup, expect):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            return self.shard.ingest(ticks, option_ticks, bars, chains, warmup=warmup,
                                     expect=expect)
        finally:
            self.in_flight -= 1

    def restore_history(self, since_ns):
        self.restores.append(since_ns)
        return asyncio.ensure_future(self._restore(since_ns))

    async def _restore(self, since_ns):
        if self.fail_with is not None:
            raise self.fail_with
        if self.restore_error is not None:
            raise self.restore_error
        return self.shard.restore_history(since_ns)

    def replay(self, ticks, bars):
        return asyncio.ensure_future(self._replay(ticks, bars))

    async def _replay(self, ticks, bars):
        if self.fail_with is not None:
            raise self.fail_with
        applied = self.shard.replay(ticks, bars)
        self.replays.append(applied)
        return applied


def make_stubs(config_for=lambda k: ShardConfig()):
    parts = partition(UNIVERSE, NUM_SHARDS)
    return [ShardStub(Shard(part, UNIVERSE, config_for(k))) for k, part in enumerate(parts)]


def chain(underlying: str) -> OptionContracts:
    exp = np.array(["2026-03-20", "2026-03-20"], dtype="datetime64[D]")
    strike = np.array([100.0, 100.0])
    call = np.array([True, False])
    occ = [occ_symbol(underlying, e, c, k) for e, c, k in zip(exp, call, strike, strict=True)]
    return OptionContracts(underlying, occ, exp, strike, call, np.array([5, 7], np.int64))


def ticks(ids, ts_ns, price=100.0) -> TickBatch:
    n = len(ids)
    return TickBatch.from_columns(kind=np.full(n, TRADE), symbol_id=ids, ts_ns=np.full(n, ts_ns),
                                  price=np.full(n, price), size=np.full(n, 10.0),
                                  bid=np.full(n, np.nan), ask=np.full(n, np.nan),
                                  bid_size=np.full(n, np.nan), ask_size=np.full(n, np.nan))


def option_quotes(symbol_id: int, ts_ns: int) -> OptionTickBatch:
    return OptionTickBatch.from_columns(
        kind=[QUOTE, QUOTE], symbol_id=[symbol_id] * 2, contract_index=[0, 1],
        ts_ns=[ts_ns] * 2, price=[np.nan] * 2, size=[np.nan] * 2, bid=[4.0, 3.0],
        ask=[4.2, 3.1], bid_size=[1.0] * 2, ask_size=[1.0] * 2)


def bars(minutes: int, start_ns: int = T0) -> BarBatch:
    """``minutes`` closed bars of every symbol, starting at ``start_ns``."""
    ids = np.repeat(np.arange(len(UNIVERSE)), minutes)
    ts = start_ns + np.tile(np.arange(minutes), len(UNIVERSE)) * NS_PER_MINUTE
    close = 100.0 + ids + np.tile(np.arange(minutes), len(UNIVERSE)) * 0.1
    return BarBatch.from_columns(symbol_id=ids, ts_ns=ts, open=close, high=close + 0.5,
                                 low=close - 0.5, close=close, volume=np.full(len(ids), 1e3))


def batch(t=None, o=None, b=None, chains=None) -> FeedBatch:
    return FeedBatch(t if t is not None else TickBatch.empty(),
                     o if o is not None else OptionTickBatch.empty(),
                     b if b is not None else BarBatch.empty(), chains or {})


def owner(symbol_id) -> int:
    return shard_of(UNIVERSE[symbol_id], NUM_SHARDS)
