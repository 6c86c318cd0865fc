"""Everything one shard knows, behind the methods its Ray actor exposes (no Ray here).

A :class:`Shard` owns the stock state (:class:`market.state.MarketState`) and
the option chains (:class:`market.chains.ChainBook`) of a subset of the
universe. :meth:`Shard.ingest` applies one routed feed batch; chains whose
underlying or quotes moved are refreshed within a per-call budget, oldest
first, and any chain still stale is refreshed when it is read. Reads return
plain JSON-able dicts (or JSON bytes for whole chains) so the serving side
does no per-contract work.

Clock: the shard's "now" is event time (the newest tick it has seen), so a
replayed session recomputes exactly what the live one did.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from cachetools import LRUCache

from core.errors import InvalidInput, NotFound
from core.storage import Storage
from market.chains import GREEK_NAMES, QUOTE_ASK, QUOTE_BID, QUOTE_LAST, ChainBook
from market.feeds.base import BarBatch, OptionContracts, OptionTickBatch, TickBatch
from market.history import HistoryStore
from market.state import ASK, BID, LAST_PRICE, MarketState


@dataclass(frozen=True, slots=True)
class ChainFilter:
    """Which contracts of a chain to return; None means no restriction."""

    expiration: date | None = None
    type: str | None = None
    min_strike: float | None = None
    max_strike: float | None = None

    def __post_init__(self) -> None:
        if self.type not in (None, "call", "put"):
            raise InvalidInput("type must be 'call' or 'put'")
        if (self.min_strike is not None and self.max_strike is not None
                and self.min_strike > self.max_strike):
            raise InvalidInput("min_strike must not exceed max_strike")


@dataclass(slots=True)
class ShardConfig:
    """Tuning of one shard."""

    rate: float = 0.045
    dividend_yield: float = 0.0
    bar_capacity: int = 2_000
    refresh_interval_ns: int = 250_000_000
    refresh_budget: int = 20_000  # contracts recomputed per ingest call at most
    history_dir: Path | Storage | None = None  # closed bars are persisted here (HistoryStore)
    # 0: closed bars reach the history store in the ingest that closed them, so a shard lost
    # with its node leaves no gap for its restart to restore (one file per symbol and minute
    # either way, since a symbol's bar closes once a minute).
    history_flush_s: float = 0.0


NS_PER_SECOND = 1_000_000_000
# Whole-chain JSON kept per symbol (filters of one chain) and beyond, least recent out first.
CHAIN_CACHE_PER_SYMBOL = 4
CHAIN_CACHE_SPARE = 64
MAX_WAITING_BARS_PER_SYMBOL = 4


def _last_per_minute(bars: BarBatch) -> BarBatch:
    """Keep the last of several bars for one symbol and minute (a vendor's correction)."""
    if len(bars) < 2:
        return bars
    key = bars.symbol_id.astype(np.int64) * (1 << 40) + bars.ts_ns // NS_PER_SECOND
    _, last = np.unique(key[::-1], return_index=True)
    if len(last) == len(key):
        return bars
    return bars.take(np.sort(len(key) - 1 - last))


def _none_if_nan(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


class Shard:
    """Market state, bars, indicators and option chains of ``symbols``."""

    def __init__(self, symbols: Sequence[str], universe: Sequence[str],
                 config: ShardConfig | None = None) -> None:
        self.config = config or ShardConfig()
        self.incarnation = uuid.uuid4().hex
        self.universe = tuple(universe)
        self.market = MarketState(symbols, universe, bar_capacity=self.config.bar_capacity)
        self.chains = ChainBook(len(self.market.symbols), rate=self.config.rate,
                                dividend_yield=self.config.dividend_yield)
        self.option_ticks = 0
        self.batches = 0
        # Whether it holds the run's data (streamed, replayed or restored), not only a
        # warm-up: a feed that restarted restores history only into shards that do not.
        self.has_run_data = False
        # Least recently used out first: clients' many filters must not evict the hot
        # chains (bench/bench_caches.py measured it against clearing a dict when full).
        self._chain_cache: LRUCache[tuple[str, ChainFilter], tuple[int, bytes]] = LRUCache(
            CHAIN_CACHE_PER_SYMBOL * len(self.market.symbols) + CHAIN_CACHE_SPARE)
        cfg = self.config
        self.history = HistoryStore(cfg.history_dir) if cfg.history_dir is not None else None
        self._history_flushed = time.monotonic()
        # Streamed bars of minutes still forming, loaded once the ticks close them.
        self._waiting_bars = BarBatch.empty()
        self.bars_loaded = 0
        self.bars_dropped = 0

    # ---- ingest -------------------------------------------------------------------------
    def ingest(self, ticks: TickBatch | None = None, option_ticks: OptionTickBatch | None = None,
               bars: BarBatch | None = None,
               chains: Mapping[str, OptionContracts] | None = None, *,
               warmup: bool = False, expect: str | None = None) -> dict[str, Any]:
        """Apply one routed batch; return counters and this shard's incarnation id.

        ``warmup`` marks start-up history (the feed's warm-up, a re-seed after a restart):
        it is loaded but not written to the history store, which holds what was streamed.
        ``expect`` is the incarnation the sender believes it talks to: a restarted shard
        refuses the batch (``refused`` in the result) until it is re-seeded, so it never
        opens its forming minute halfway through (the sender replays the whole minute).
        """
        if expect is not None and expect != self.incarnation:
            return {"incarnation": self.incarnation, "refused": True, "ticks": 0,
                    "bars_closed": 0, "contracts_refreshed": 0,
                    "has_run_data": self.has_run_data}
        if chains:
            owned = {self.market.slot_of[u]: c for u, c in chains.items()
                     if u in self.market.slot_of}
            self.chains.set_chains(owned)
        # History (warm-up, backfill) goes in before the ticks. A vendor's bar for a minute
        # the ticks have not closed yet waits: Alpaca streams minute m's bar just after m
        # ends, with or before the first trade of m+1. Once the ticks close m it replaces
        # the bar built from the streamed trades (the vendor's volume covers the whole
        # market), in the shard's bars and in the history store.
        if bars is not None and len(bars):
            self._load_bars(bars, persist=not warmup)
        closed = 0
        if ticks is not None and len(ticks):
            closed = self.market.apply(ticks)
            self._persist(self.market.closed)
            moved = self.market.touched
            self.chains.dirty[moved[self.chains.count[moved] > 0]] = True
            if closed and len(self._waiting_bars):  # only a closed bar moves a forming one
                waiting, self._waiting_bars = self._waiting_bars, BarBatch.empty()
                self._load_bars(waiting, persist=True)
        if option_ticks is not None and len(option_ticks):
            self.chains.apply(option_ticks, self.market.slots_for(option_ticks.symbol_id))
            self.option_ticks += len(option_ticks)
        refreshed = self._refresh_due()
        self.batches += 1
        if not warmup and ((ticks is not None and len(ticks)) or (bars is not None and len(bars))):
            self.has_run_data = True
        return {"incarnation": self.incarnation, "ticks": 0 if ticks is None else len(ticks),
                "bars_closed": closed, "contracts_refreshed": refreshed,
                "has_run_data": self.has_run_data}

    def _load_bars(self, bars: BarBatch, *, persist: bool) -> None:
        """Load the bars of minutes the ticks have closed; streamed ones wait for the rest."""
        bars = _last_per_minute(bars.take(self.market.slots_for(bars.symbol_id) >= 0))
        forming = self.market.at_or_after_forming(bars)
        ready = bars.take(~forming) if forming.any() else bars
        if len(ready):
            self.bars_loaded += self.market.load_bars(ready)
            if persist:  # the history store names symbols by local slot, as closed bars do
                self._persist(BarBatch.from_columns(
                    **{**ready.to_dict(), "symbol_id": self.market.slots_for(ready.symbol_id)}))
        if persist and forming.any():
            waiting = _last_per_minute(BarBatch.concat([self._waiting_bars, bars.take(forming)]))
            excess = len(waiting) - MAX_WAITING_BARS_PER_SYMBOL * len(self.market.symbols)
            if excess > 0:  # a symbol that stopped trading: keep the newest bars
                waiting = waiting.take(np.argsort(waiting.ts_ns, kind="stable")[excess:])
                self.bars_dropped += excess
            self._waiting_bars = waiting

    def _persist(self, bars: BarBatch) -> None:
        """Buffer closed bars for the history store; write them out every ``history_flush_s``."""
        if self.history is None:
            return
        if len(bars):
            self.history.append_bars(self.market.symbols, bars)
        if time.monotonic() - self._history_flushed >= self.config.history_flush_s:
            self.history.flush()
            self._history_flushed = time.monotonic()

    def restore_history(self, since_ns: int) -> int:
        """Load the closed bars the history store holds from ``since_ns`` on; return how many.

        After a restart the feed re-seeds this shard with the warm-up; the minutes between
        the warm-up and the crash were flushed to the history store (all of them with
        ``history_flush_s`` 0, the default), so the indicator series go on without a gap.
        """
        if self.history is None:
            return 0
        ids = {symbol: i for i, symbol in enumerate(self.universe)}
        bars = BarBatch.concat([self.history.read_bars(symbol, start_ns=since_ns,
                                                       symbol_id=ids[symbol])
                                for symbol in self.market.symbols])
        taken = self.market.load_bars(bars)  # skips minutes the ticks still cover
        self.has_run_data = True
        self.bars_loaded += taken
        return taken

    def replay(self, ticks: TickBatch, bars: BarBatch) -> int:
        """Apply journaled ticks (and bars) a lost call or a lost shard did not apply;
        return how many ticks were applied.

        Only ticks newer than their symbol's newest tick here are applied: a shard that
        survived skips what it already has, a restarted one (history restored up to the
        minute it was forming) skips the minutes its history holds. Batches are routed in
        time order, so this takes exactly the ticks the lost calls carried.
        """
        if len(ticks):
            slots = self.market.slots_for(ticks.symbol_id)
            newest = self.market.last_ts[np.maximum(slots, 0)]
            ticks = ticks.take((slots >= 0) & (ticks.ts_ns > newest))
        self.ingest(ticks, None, bars)
        return len(ticks)

    def flush_history(self) -> None:
        """Write buffered bars to the history store now."""
        if self.history is not None:
            self.history.flush()
            self._history_flushed = time.monotonic()

    def now_ns(self) -> int:
        """Event time: the newest tick or bar this shard has seen."""
        return int(self.market.last_ts.max(initial=0))

    def _spot(self) -> npt.NDArray[np.float64]:
        st = self.market.state
        mid = 0.5 * (st[:, BID] + st[:, ASK])
        return np.where(np.isfinite(st[:, LAST_PRICE]), st[:, LAST_PRICE], mid)

    def _refresh_due(self) -> int:
        now = self.now_ns()
        due = np.flatnonzero(self.chains.dirty & (self.chains.count > 0) & (
            now - self.chains.refreshed_ns >= self.config.refresh_interval_ns))
        if len(due) == 0:
            return 0
        due = due[np.argsort(self.chains.refreshed_ns[due], kind="stable")]
        within = np.cumsum(self.chains.count[due]) <= self.config.refresh_budget
        within[0] = True  # always make progress, even on a chain larger than the budget
        return self.chains.refresh(due[within], self._spot(), now)

    # ---- reads --------------------------------------------------------------------------
    def _slot(self, symbol: str) -> int:
        slot = self.market.slot_of.get(symbol)
        if slot is None:
            raise NotFound(f"unknown symbol {symbol!r}")
        return slot

    def snapshot(self, symbol: str) -> dict[str, Any]:
        """The symbol's MarketData as a JSON-able dict."""
        self._slot(symbol)
        data = self.market.snapshot(symbol)
        if data is None:
            raise NotFound(f"no market data yet for {symbol!r}", code="no_data")
        return data.model_dump(mode="json")

    def snapshots(self, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        """MarketData dicts of the symbols that have data."""
        out: dict[str, dict[str, Any]] = {}
        for symbol in symbols:
            if symbol in self.market.slot_of:
                data = self.market.snapshot(symbol)
                if data is not None:
                    out[symbol] = data.model_dump(mode="json")
        return out

    def bars(self, symbol: str, limit: int, include_forming: bool = False) -> list[dict[str, Any]]:
        """Closed 1-minute bars, oldest first, with indicators as of each close."""
        self._slot(symbol)
        return [b.model_dump(mode="json") for b in
                self.market.bars(symbol, limit, include_forming=include_forming)]

    def _fresh_chain(self, slot: int) -> None:
        if self.chains.dirty[slot] or self.chains.refreshed_ns[slot] == 0:
            self.chains.refresh(np.array([slot]), self._spot(), self.now_ns())

    def chain_rows(self, symbol: str, flt: ChainFilter) -> npt.NDArray[np.int64]:
        """Flat rows of the symbol's contracts that pass ``flt`` (chain refreshed first)."""
        slot = self._slot(symbol)
        if not self.chains.has_chain(slot):
            raise NotFound(f"no option chain for {symbol!r}", code="no_chain")
        self._fresh_chain(slot)
        rows = self.chains.rows(slot)
        book = self.chains
        keep = np.ones(len(rows), np.bool_)
        if flt.expiration is not None:
            keep &= book.expiration[rows] == np.datetime64(flt.expiration, "D")
        if flt.type is not None:
            keep &= book.is_call[rows] == (flt.type == "call")
        if flt.min_strike is not None:
            keep &= book.strike[rows] >= flt.min_strike
        if flt.max_strike is not None:
            keep &= book.strike[rows] <= flt.max_strike
        return rows[keep]

    def contracts(self, symbol: str, rows: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
        """OptionsData dicts for ``rows`` (CONTRACT §5 field names)."""
        b = self.chains
        q = b.quotes[rows]
        expiration = [str(d) for d in b.expiration[rows]]
        occ_of = {int(r): occ for r, occ in zip(self.chains.rows(int(b.slot[rows[0]])),
                                                b.definitions[int(b.slot[rows[0]])].contract,
                                                strict=True)} if len(rows) else {}
        cols = {
            "strike": b.strike[rows].tolist(), "price": _none_if_nan(b.price[rows].tolist()),
            "bid": _none_if_nan(q[:, QUOTE_BID].tolist()),
            "ask": _none_if_nan(q[:, QUOTE_ASK].tolist()),
            "last": _none_if_nan(q[:, QUOTE_LAST].tolist()), "volume": b.volume[rows].tolist(),
            "open_interest": b.open_interest[rows].tolist(),
            "time_to_expiry": b.time_to_expiry[rows].tolist(),
            "implied_volatility": _none_if_nan(b.iv[rows].tolist()),
            "vendor_implied_volatility": _none_if_nan(b.vendor_iv[rows].tolist()),
        }
        greeks = b.greeks[rows].tolist()
        vendor = b.vendor_greeks[rows].tolist()
        is_call = b.is_call[rows].tolist()
        out = []
        for i, row in enumerate(rows.tolist()):
            g, vg = greeks[i], vendor[i]
            out.append({
                "symbol": symbol, "expiration": expiration[i], "strike": cols["strike"][i],
                "type": "call" if is_call[i] else "put", "price": cols["price"][i],
                "volume": cols["volume"][i], "open_interest": cols["open_interest"][i],
                "contract": occ_of[row], "bid": cols["bid"][i], "ask": cols["ask"][i],
                "last": cols["last"][i], "time_to_expiry": cols["time_to_expiry"][i],
                "implied_volatility": cols["implied_volatility"][i],
                "greeks": None if g[0] != g[0] else dict(zip(GREEK_NAMES, g, strict=True)),
                "vendor_implied_volatility": cols["vendor_implied_volatility"][i],
                "vendor_greeks": None if vg[0] != vg[0] else dict(zip(GREEK_NAMES, vg,
                                                                       strict=True)),
            })
        return out

    def chain_json(self, symbol: str, flt: ChainFilter | None = None) -> bytes:
        """The OptionsChain (CONTRACT §5) as JSON bytes, cached until the chain changes."""
        flt = flt or ChainFilter()
        rows = self.chain_rows(symbol, flt)
        slot = self._slot(symbol)
        key = (symbol, flt)
        version = int(self.chains.version[slot])
        cached = self._chain_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        body = orjson.dumps({
            "symbol": symbol, "underlying_price": float(self._spot()[slot]),
            "as_of": _iso(int(self.chains.refreshed_ns[slot])),
            "model": {"name": "black_scholes_merton", "rate": self.config.rate,
                      "dividend_yield": self.config.dividend_yield},
            "contracts": self.contracts(symbol, rows),
        })
        self._chain_cache[key] = (version, body)
        return body

    def chain_arrays(self, symbol: str) -> dict[str, Any]:
        """The whole chain as columns, for analytics (refreshed first)."""
        rows = self.chain_rows(symbol, ChainFilter())
        b = self.chains
        return {
            "underlying_price": float(self._spot()[self._slot(symbol)]),
            "as_of_ns": int(b.refreshed_ns[self._slot(symbol)]),
            "is_call": b.is_call[rows], "strike": b.strike[rows],
            "expiration": b.expiration[rows], "time_to_expiry": b.time_to_expiry[rows],
            "volume": b.volume[rows], "open_interest": b.open_interest[rows],
            "previous_open_interest": b.previous_open_interest[rows],
            "price": b.price[rows], "implied_volatility": b.iv[rows],
            "delta": b.greeks[rows, 0], "gamma": b.greeks[rows, 1],
        }

    # ---- change feed for streaming ------------------------------------------------------
    @property
    def sequence(self) -> int:
        """The newest change's sequence number (what :meth:`market_changes` returns)."""
        return self.market.sequence

    def market_changes(self, since: int, symbols: Sequence[str], first: Sequence[str] = (),
                       limit: int | None = None) -> tuple[int, list[str], dict[str, Any]]:
        """Which ``symbols`` changed after ``since``, and snapshots to publish.

        Returns (sequence, changed symbols, snapshots): snapshots of the symbols of
        ``first`` (the caller's oldest-waiting, changed earlier) in order, then of the
        other changed ones, at most ``limit`` of them (None: no limit). A snapshot costs
        far more than a name, and a hub that can publish one symbol per poll need not
        fetch a hundred.
        """
        slot_of = self.market.slot_of
        wanted = [s for s in symbols if s in slot_of]
        slots = np.array([slot_of[s] for s in wanted], np.int64)
        changed = [wanted[i] for i in np.flatnonzero(self.market.version[slots] > since)] \
            if len(slots) else []
        fetch = list(dict.fromkeys(s for s in first if s in slot_of))
        queued = set(fetch)
        fetch += [s for s in changed if s not in queued]
        if limit is not None:
            fetch = fetch[:max(0, limit)]
        return self.market.sequence, changed, self.snapshots(fetch)

    def chain_versions(self, symbols: Sequence[str]) -> dict[str, int]:
        """Chain refresh counters of the symbols that have chains."""
        return {s: int(self.chains.version[self.market.slot_of[s]]) for s in symbols
                if s in self.market.slot_of and self.chains.has_chain(self.market.slot_of[s])}

    def stats(self) -> dict[str, Any]:
        """Counters for /health and benchmarks."""
        return {
            "incarnation": self.incarnation, "symbols": len(self.market.symbols),
            "ticks": self.market.ticks, "option_ticks": self.option_ticks,
            "rejected": self.market.rejected + self.chains.rejected, "batches": self.batches,
            "contracts": int(self.chains.count.sum()), "event_time_ns": self.now_ns(),
            "bars_loaded": self.bars_loaded, "bars_waiting": len(self._waiting_bars),
            "bars_dropped": self.bars_dropped,
        }
