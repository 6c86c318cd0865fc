"""Live Alpaca feed: alpaca-py's stock and option streams plus its historical clients.

One connection per stream (Alpaca refuses a second with 406), owned by the
feed actor and fanned out to the shards as batches. At start
(:meth:`AlpacaFeed.warmup`): recent 1-minute bars per symbol
(``StockHistoricalDataClient``), chains from option snapshots
(``OptionHistoricalDataClient.get_option_chain``, which carry Alpaca's IV and
Greeks, kept as ``vendor_*``) merged with open interest from
``TradingClient.get_option_contracts``. Then :meth:`AlpacaFeed.stream`
buffers stream messages and yields one batch per ``feed_interval_ms``.
After any reconnect the bars missed since the last message are backfilled
from the historical API and arrive as ``FeedBatch.bars``.

Subscriptions (:meth:`AlpacaFeed.set_interest`): the configured symbols
always (trades, quotes, bars; at most ``alpaca_stock_budget``); option
contracts nearest the money up to ``alpaca_option_budget``, the chains clients
subscribed to first. The universe itself is fixed (``symbol_id`` must mean the
same to the feed actor and every shard), so requested symbols outside it are
reported in ``status().detail`` and not streamed. The REST clients are blocking
and run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed, OptionsFeed
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.live import OptionDataStream, StockDataStream
from alpaca.data.requests import OptionChainRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import GetOptionContractsRequest

from core.errors import FeedError
from core.settings import normalize_symbol
from market.feeds.alpaca_convert import (
    MessageBuffer,
    bars_from_barset,
    build_chain,
    snapshot_messages,
)
from market.feeds.alpaca_stream import StreamRunner
from market.feeds.base import (
    NS_PER_MINUTE,
    BarBatch,
    FeedBatch,
    FeedStatus,
    OptionContracts,
    TickBatch,
)

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)
NEW_YORK = ZoneInfo("America/New_York")
SEEN_BARS = 5_000  # bar minutes remembered per symbol to tell backfill from duplicates


def us_market_open(now: datetime | None = None) -> bool:
    """Return whether US equities trade now (09:30–16:00 New York, Mon–Fri; no holidays)."""
    local = (now or datetime.now(UTC)).astimezone(NEW_YORK)
    minutes = local.hour * 60 + local.minute
    return local.weekday() < 5 and 570 <= minutes < 960


class AlpacaFeed:
    """The :class:`market.feeds.base.Feed` for Alpaca (``MARKETRAY_FEED=alpaca``)."""

    def __init__(self, settings: Settings, *, market_open: Any = None) -> None:
        if settings.alpaca_key_id is None or settings.alpaca_secret_key is None:
            raise FeedError("MARKETRAY_FEED=alpaca needs MARKETRAY_ALPACA_KEY_ID and "
                            "MARKETRAY_ALPACA_SECRET_KEY")
        self.settings = settings
        key = settings.alpaca_key_id.get_secret_value()
        secret = settings.alpaca_secret_key.get_secret_value()
        self.symbols: tuple[str, ...] = tuple(settings.symbols)
        self.configured = frozenset(settings.symbols)
        self._stock_client = StockHistoricalDataClient(key, secret,
                                                       url_override=settings.alpaca_data_url)
        self._option_client = OptionHistoricalDataClient(key, secret,
                                                         url_override=settings.alpaca_data_url)
        self._trading_client = TradingClient(key, secret, paper=True,
                                             url_override=settings.alpaca_trading_url)
        self._data_feed = DataFeed(settings.alpaca_feed)
        if market_open is None:
            market_open = (us_market_open if settings.alpaca_silence_market_hours_only
                           else lambda: True)
        common: dict[str, Any] = {
            "silence_s": settings.alpaca_silence_s, "market_open": market_open,
            "backoff_initial_s": settings.alpaca_backoff_initial_s,
            "backoff_max_s": settings.alpaca_backoff_max_s,
            "fatal_retry_s": settings.alpaca_fatal_retry_s,
        }
        self.buffer = MessageBuffer()
        self.buffer.set_universe(self.symbols)
        self.stock = StreamRunner(
            "stock", StockDataStream(key, secret, raw_data=True, feed=self._data_feed,
                                     url_override=settings.alpaca_stock_stream_url),
            self.buffer.add, on_reconnect=self._backfill_gap, **common)
        self.option = StreamRunner(
            "option", OptionDataStream(key, secret, raw_data=True, feed=OptionsFeed.INDICATIVE,
                                       url_override=settings.alpaca_option_stream_url),
            lambda m: self.buffer.add(m, option=True), **common)
        self.chains: dict[str, OptionContracts] = {}
        self._changed_chains: dict[str, OptionContracts] = {}
        self._pending_bars: list[BarBatch] = []
        self._last_bar_ns: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}
        self._last_price: dict[str, float] = {}
        self._interest: set[str] = set()
        self.not_in_universe: list[str] = []
        self.backfilled_bars = 0
        self.rest_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AlpacaFeed:
        """Build from the ``MARKETRAY_ALPACA_*`` settings."""
        return cls(settings)

    # Historical data (blocking SDK calls, run in threads).

    async def _rest(self, fn: Any, *args: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args)
        except APIError as exc:
            self.rest_error = f"alpaca REST {getattr(exc, 'status_code', '')}: {exc}"
            raise FeedError(self.rest_error) from exc
        except Exception as exc:
            self.rest_error = f"alpaca REST unreachable: {type(exc).__name__}: {exc}"
            raise FeedError(self.rest_error) from exc
        self.rest_error = None
        return result

    async def fetch_bars(self, symbols: Sequence[str], start_ns: int) -> BarBatch:
        """Return completed 1-minute bars of ``symbols`` from ``start_ns`` to now."""
        if not symbols:
            return BarBatch.empty()
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols), timeframe=TimeFrame.Minute,
            start=datetime.fromtimestamp(start_ns / 1e9, UTC), feed=self._data_feed)
        barset = await self._rest(self._stock_client.get_stock_bars, request)
        ids = {s: i for i, s in enumerate(self.symbols)}
        return bars_from_barset(barset.data, ids)

    async def fetch_chain(self, underlying: str) -> tuple[OptionContracts, list[dict[str, Any]]]:
        """Return the chain of ``underlying`` and its snapshots' latest quotes/trades."""
        horizon = datetime.now(UTC).date() + timedelta(days=self.settings.alpaca_chain_days)
        snapshots = await self._rest(self._option_client.get_option_chain, OptionChainRequest(
            underlying_symbol=underlying, expiration_date_lte=horizon))
        contracts: list[Any] = []
        token: str | None = None
        while True:
            page = await self._rest(self._trading_client.get_option_contracts,
                                    GetOptionContractsRequest(
                                        underlying_symbols=[underlying], limit=10_000,
                                        expiration_date_lte=horizon, page_token=token))
            contracts += page.option_contracts or []
            token = page.next_page_token
            if not token:
                break
        return build_chain(underlying, contracts, snapshots), snapshot_messages(snapshots)

    async def warmup(self) -> FeedBatch:
        """Return recent bars and the option chains; failures show on ``/health``, not raise."""
        bars = BarBatch.empty()
        start = time.time_ns() - self.settings.alpaca_warmup_minutes * NS_PER_MINUTE
        try:
            bars = await self.fetch_bars(self.symbols, start)
        except FeedError as exc:
            log.error("alpaca bar warm-up failed: %s", exc)
        self._note_bars(bars)
        seeds: list[dict[str, Any]] = []
        for symbol in self.symbols:
            try:
                chain, messages = await self.fetch_chain(symbol)
            except FeedError as exc:
                log.error("alpaca chain for %s failed: %s", symbol, exc)
                continue
            if len(chain):
                self.chains[symbol] = chain
                seeds += messages
        self.buffer.set_universe(self.symbols, self.chains)
        for message in seeds:
            self.buffer.add(message, option=True)
        _, option_ticks, _ = self.buffer.drain()
        await self._update_subscriptions()
        return FeedBatch(TickBatch.empty(), option_ticks, bars, dict(self.chains))

    def _note_bars(self, bars: BarBatch) -> None:
        for sid in np.unique(bars.symbol_id):
            mask = bars.symbol_id == sid
            symbol = self.symbols[int(sid)]
            seen = self._seen.setdefault(symbol, set())
            seen.update(int(t) for t in bars.ts_ns[mask])
            if len(seen) > 2 * SEEN_BARS:
                self._seen[symbol] = set(sorted(seen)[-SEEN_BARS:])
            last = int(bars.ts_ns[mask].max())
            if last > self._last_bar_ns.get(symbol, 0):
                self._last_bar_ns[symbol] = last
                self._last_price[symbol] = float(bars.close[mask][-1])

    async def _backfill_gap(self, gap_start_ns: int) -> None:
        """Fetch the bars a disconnection lost and queue them for the next batch."""
        known = [self._last_bar_ns.get(s) for s in self.symbols]
        floor = min((k for k in known if k), default=gap_start_ns - NS_PER_MINUTE)
        start = min(floor + NS_PER_MINUTE, gap_start_ns - NS_PER_MINUTE)
        try:
            bars = await self.fetch_bars(self.symbols, start)
        except FeedError as exc:
            log.warning("backfill after reconnect failed: %s", exc,
                        extra={"event": "feed.backfill_failed", "error": str(exc)})
            return
        # Keep only bars not seen yet (live bars of the new connection may already be in).
        fresh = bars.take(np.array([int(t) not in self._seen.get(self.symbols[int(i)], ())
                                    for i, t in zip(bars.symbol_id, bars.ts_ns, strict=True)],
                                   dtype=np.bool_)) if len(bars) else bars
        if len(fresh):
            self._pending_bars.append(fresh)
            self.backfilled_bars += len(fresh)
            log.info("backfilled %d bars after a %s gap", len(fresh), "stream",
                     extra={"event": "feed.backfilled", "bars": len(fresh),
                            "gap_start_ns": gap_start_ns})

    # Subscriptions.

    async def set_interest(self, symbols: set[str]) -> None:
        """Follow what clients subscribe to, within the stock and option budgets."""
        wanted: set[str] = set()
        for raw in symbols:
            try:
                wanted.add(normalize_symbol(raw))
            except ValueError:
                continue
        self._interest = wanted & set(self.symbols)
        outside = sorted(wanted - set(self.symbols))
        if outside:
            # The universe (symbol_id ↔ symbol) is fixed for the feed actor and the shards.
            self.not_in_universe = outside
            log.info("clients asked for symbols outside the universe: %s", outside)
        await self._update_subscriptions()

    def select_contracts(self) -> list[str]:
        """Return the option contracts to stream: nearest the money, requested chains first."""
        budget = self.settings.alpaca_option_budget
        order = [s for s in self.symbols if s in self._interest] + [
            s for s in self.symbols if s not in self._interest]
        ranked: list[list[str]] = []
        for symbol in order:
            chain = self.chains.get(symbol)
            if chain is None or not len(chain):
                continue
            spot = self._last_price.get(symbol) or float(np.median(chain.strike))
            expiry_rank = np.unique(chain.expiration, return_inverse=True)[1]
            score = np.abs(chain.strike / spot - 1.0) + 0.02 * expiry_rank
            ranked.append([chain.contract[i] for i in np.argsort(score, kind="stable")])
        chosen: list[str] = []
        depth = 0
        while len(chosen) < budget and any(depth < len(r) for r in ranked):
            chosen += [r[depth] for r in ranked if depth < len(r)]
            depth += 1
        return chosen[:budget]

    async def _update_subscriptions(self) -> None:
        stocks = set(self.symbols[: self.settings.alpaca_stock_budget])
        await self.stock.set_wanted({"trades": stocks, "quotes": stocks, "bars": stocks,
                                     "updatedBars": stocks})
        contracts = set(self.select_contracts())
        await self.option.set_wanted({"trades": contracts, "quotes": contracts})

    # Streaming.

    async def stream(self) -> AsyncIterator[FeedBatch]:
        """Run both stream connections and yield one batch per ``feed_interval_ms``."""
        self._tasks += [asyncio.create_task(self.stock.run(), name="alpaca-stock"),
                        asyncio.create_task(self.option.run(), name="alpaca-option"),
                        asyncio.create_task(self._refresh_chains_daily(), name="alpaca-chains")]
        interval = self.settings.feed_interval_ms / 1000
        try:
            while not self._closed:
                await asyncio.sleep(interval)
                batch = self._drain()
                if batch is not None:
                    yield batch
        finally:
            await self.close()

    async def _refresh_chains_daily(self, check_s: float = 60.0) -> None:
        """Reload chains (new listings, start-of-day open interest) when the NY date turns."""
        loaded = datetime.now(NEW_YORK).date()
        while not self._closed:
            await asyncio.sleep(check_s)
            today = datetime.now(NEW_YORK).date()
            if today == loaded:
                continue
            loaded = today
            for symbol in self.symbols:
                try:
                    chain, _ = await self.fetch_chain(symbol)
                except FeedError as exc:
                    log.warning("daily chain refresh of %s failed: %s", symbol, exc)
                    continue
                self.chains[symbol] = chain
                self._changed_chains[symbol] = chain
            self.buffer.set_universe(self.symbols, self.chains)
            await self._update_subscriptions()

    def _drain(self) -> FeedBatch | None:
        if not len(self.buffer) and not self._pending_bars and not self._changed_chains:
            return None
        ticks, option_ticks, live_bars = self.buffer.drain()
        bars = BarBatch.concat([*self._pending_bars, live_bars])
        self._pending_bars = []
        if len(bars) > 1:
            bars = bars.take(np.argsort(bars.ts_ns, kind="stable"))
        self._note_bars(bars)
        trades = ticks.take(ticks.kind == 0) if len(ticks) else ticks
        for sid in np.unique(trades.symbol_id):
            self._last_price[self.symbols[int(sid)]] = float(
                trades.price[trades.symbol_id == sid][-1])
        chains, self._changed_chains = self._changed_chains, {}
        return FeedBatch(ticks, option_ticks, bars, chains)

    def status(self) -> FeedStatus:
        """Both streams' health; ``error`` carries a fatal login refusal verbatim."""
        streams = {"stock": self.stock.status(), "option": self.option.status()}
        option_needed = any(self.option.wanted.values())
        connected = self.stock.connected and (self.option.connected or not option_needed)
        error = next((s["error"] for s in streams.values() if s["fatal"]), None) or (
            None if connected else self.stock.error or self.option.error) or self.rest_error
        last = [r.last_message_ns for r in (self.stock, self.option) if r.last_message_ns]
        return FeedStatus(
            name="alpaca", connected=connected, last_message_ns=max(last) if last else None,
            messages=self.stock.messages + self.option.messages,
            dropped=sum(sum(r.dropped.values()) for r in (self.stock, self.option)),
            error=error,
            detail={"streams": streams, "backfilled_bars": self.backfilled_bars,
                    "symbols": len(self.symbols), "chains": len(self.chains),
                    "interest": sorted(self._interest), "not_in_universe": self.not_in_universe,
                    "dropped_by_reason": dict(self.buffer.dropped),
                    "market_open": us_market_open()},
        )

    async def close(self) -> None:
        """Stop both streams."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(self.stock.stop(), self.option.stop(), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
