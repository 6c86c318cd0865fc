"""The serving side's view of market state: route each read to the owning shard."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

import numpy as np
import orjson
import ray

from actors.market import MarketActors
from actors.sharding import shard_of
from core.errors import MarketrayError, NotFound, Unavailable
from core.models import BarsResponse, MarketData, OptionsChain
from core.settings import normalize_symbol
from market.shard import ChainFilter
from market.state import MarketState

SUPPORTED_TIMEFRAMES = {"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30, "1Hour": 60, "1Day": 390}
CALL_TIMEOUT_S = 10.0


class TtlCache:
    """Values for at most ``ttl_s`` seconds; concurrent misses of a key share one fetch."""

    def __init__(self, ttl_s: float, max_entries: int = 4_096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._inflight: dict[Any, asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Any, fetch: Any) -> Any:
        """Return the cached value for ``key`` or await ``fetch()`` (once for all waiters)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl_s:
            self.hits += 1
            return entry[1]
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await fetch()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)
        future.set_result(value)
        return value


class MarketGateway:
    """Async reads of snapshots, bars and chains from the shard actors.

    Whole-chain JSON is cached per replica for ``chain_ttl_s`` (the shards
    refresh a chain at most that often), so a burst of readers of one chain
    costs one shard call.
    """

    def __init__(self, actors: MarketActors, symbols: tuple[str, ...], history: Any = None,
                 chain_ttl_s: float = 0.25) -> None:
        self.actors = actors
        self.symbols = symbols
        self._known = set(symbols)
        self.history = history  # market.history.HistoryStore when one is configured
        self._chains = TtlCache(chain_ttl_s)

    def owner(self, symbol: str) -> Any:
        """The shard actor handle that owns ``symbol``; NotFound for unknown symbols."""
        try:
            symbol = normalize_symbol(symbol)
        except ValueError as exc:
            raise NotFound(str(exc)) from exc
        if symbol not in self._known:
            raise NotFound(f"unknown symbol {symbol!r}; tracked: {', '.join(self.symbols)}")
        return self.actors.shards[shard_of(symbol, len(self.actors.shards))]

    async def _call(self, ref: Any) -> Any:
        try:
            return await asyncio.wait_for(ref, CALL_TIMEOUT_S)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, MarketrayError):
                raise cause from None
            raise Unavailable(f"market shard failed: {type(cause).__name__}") from exc
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            raise Unavailable("market shard is restarting; retry shortly") from exc
        except TimeoutError as exc:
            raise Unavailable("market shard did not answer in time") from exc

    async def snapshot(self, symbol: str) -> MarketData:
        """Latest MarketData of ``symbol``."""
        return MarketData.model_validate(await self.snapshot_dict(symbol))

    async def snapshot_dict(self, symbol: str) -> dict[str, Any]:
        """Latest MarketData of ``symbol`` as the shard's JSON-able dict."""
        symbol = symbol.upper()
        result: dict[str, Any] = await self._call(self.owner(symbol).snapshot.remote(symbol))
        return result

    async def bars(self, symbol: str, timeframe: str = "1Min", limit: int = 100) -> BarsResponse:
        """Bars oldest first with indicator values as of each bar's close.

        1-minute bars come from the shard's ring (and the history store beyond
        it when configured); longer timeframes aggregate 1-minute bars.
        """
        symbol = symbol.upper()
        minutes = SUPPORTED_TIMEFRAMES[timeframe]
        wanted = limit * minutes
        raw: list[dict[str, Any]] = await self._call(self.owner(symbol).bars.remote(symbol, wanted))
        if len(raw) < wanted and self.history is not None:
            oldest = raw[0]["timestamp"] if raw else None
            end_ns = (int(np.datetime64(oldest.replace("Z", ""), "ns").astype(np.int64))
                      if oldest else None)
            older = await asyncio.to_thread(history_bars, self.history, symbol, end_ns,
                                            wanted - len(raw))
            raw = older + raw
        if minutes > 1:
            raw = aggregate_bars(raw, minutes)[-limit:]
        return BarsResponse.model_validate({"symbol": symbol, "timeframe": timeframe,
                                            "bars": raw[-limit:]})

    async def chain_json(self, symbol: str, flt: ChainFilter) -> bytes:
        """The filtered OptionsChain as JSON bytes (built and cached by the shard)."""
        symbol = symbol.upper()
        owner = self.owner(symbol)
        body: bytes = await self._chains.get(
            (symbol, flt), lambda: self._call(owner.chain_json.remote(symbol, flt)))
        return body

    async def chain(self, symbol: str, expiration: date | None = None, type: str | None = None,
                    min_strike: float | None = None, max_strike: float | None = None
                    ) -> OptionsChain:
        """The filtered OptionsChain as a model."""
        flt = ChainFilter(expiration, type, min_strike, max_strike)
        return OptionsChain.model_validate(orjson.loads(await self.chain_json(symbol, flt)))

    async def chain_arrays(self, symbol: str) -> dict[str, Any]:
        """The chain's columns (numpy arrays) for analytics."""
        symbol = symbol.upper()
        result: dict[str, Any] = await self._call(self.owner(symbol).chain_arrays.remote(symbol))
        return result

    async def chain_summary(self, symbol: str) -> dict[str, Any]:
        """Option-chain analytics (put/call ratios, term structure, skew, max pain, ...)."""
        from market.chain_analytics import chain_summary  # noqa: PLC0415 - optional module

        arrays = await self.chain_arrays(symbol)
        return chain_summary(**arrays)  # type: ignore[no-any-return]

    async def stats(self) -> list[dict[str, Any] | None]:
        """Each shard's counters, None for a shard that does not answer."""
        refs = [shard.stats.remote() for shard in self.actors.shards]
        out: list[dict[str, Any] | None] = []
        for ref in refs:
            try:
                out.append(await asyncio.wait_for(ref, 5.0))
            except Exception:  # a dead or restarting shard shows as None on /health
                out.append(None)
        return out

    async def feed_status(self) -> dict[str, Any] | None:
        """The feed actor's status, None when it does not answer."""
        try:
            status: dict[str, Any] = await asyncio.wait_for(self.actors.feed.status.remote(), 5.0)
        except Exception:  # shown as unhealthy on /health
            return None
        return status


HISTORY_WARMUP_BARS = 200


def history_bars(history: Any, symbol: str, end_ns: int | None, limit: int
                 ) -> list[dict[str, Any]]:
    """The newest ``limit`` stored bars before ``end_ns``, with indicators.

    Indicators are recomputed by replaying the stored bars (plus up to
    ``HISTORY_WARMUP_BARS`` older ones for warm-up) through the same
    :class:`MarketState` the shards use, so they are the values as of each bar's
    close over the stored history.
    """
    batch = history.read_bars(symbol, end_ns=end_ns, limit=limit + HISTORY_WARMUP_BARS)
    if len(batch) == 0:
        return []
    state = MarketState([symbol], [symbol], bar_capacity=len(batch))
    state.load_bars(batch)
    return [b.model_dump(mode="json") for b in state.bars(symbol, limit)]


def aggregate_bars(bars: list[dict[str, Any]], minutes: int) -> list[dict[str, Any]]:
    """Aggregate 1-minute bars into ``minutes`` buckets aligned to the epoch.

    Indicator fields of a bucket are those of its last minute (values as of the
    bucket's close are not recomputed on the coarser series).
    """
    if not bars:
        return []
    ts = np.array([np.datetime64(b["timestamp"].replace("Z", ""), "m").astype(np.int64)
                   for b in bars])
    bucket = ts // minutes
    out: list[dict[str, Any]] = []
    for key in np.unique(bucket):
        rows = [bars[i] for i in np.flatnonzero(bucket == key)]
        first, last = rows[0], rows[-1]
        merged = dict(last)
        merged.update(timestamp=str(np.datetime64(int(key) * minutes, "m")) + ":00Z",
                      open=first["open"], high=max(r["high"] for r in rows),
                      low=min(r["low"] for r in rows), close=last["close"],
                      volume=sum(r["volume"] for r in rows))
        out.append(merged)
    return out
