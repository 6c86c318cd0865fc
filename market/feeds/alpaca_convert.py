"""Turn Alpaca stream messages and SDK models into columnar feed batches, in bulk.

The stream handlers call :meth:`MessageBuffer.add` once per message (raw
msgpack dicts, as alpaca-py delivers them with ``raw_data=True``, or the SDK's
``Trade``/``Quote``/``Bar`` models); the feed calls :meth:`MessageBuffer.drain`
each period to build numpy columns in one go. A message that is malformed
(missing or non-numeric fields, a ``t`` that is not a timestamp) or
unexpected (unknown type, unsubscribed symbol) is counted and dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgpack
import numpy as np

from market.feeds.base import QUOTE, TRADE, BarBatch, OptionContracts, OptionTickBatch, TickBatch

NAN = float("nan")
_SDK_FIELDS = {  # SDK model attribute -> wire key
    "price": "p", "size": "s", "bid_price": "bp", "bid_size": "bs", "ask_price": "ap",
    "ask_size": "as", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
}


def timestamp_ns(value: object) -> int | None:
    """Return ``value`` (msgpack Timestamp or aware datetime) as int ns, else None."""
    if isinstance(value, msgpack.Timestamp):
        return int(value.to_unix_nano())
    if isinstance(value, datetime) and value.tzinfo is not None:
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1_000
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def from_sdk(model: Any) -> dict[str, Any]:
    """Return the wire-shaped dict of an alpaca-py ``Trade``, ``Quote`` or ``Bar`` model."""
    name = type(model).__name__
    kind = {"Trade": "t", "Quote": "q", "Bar": "b"}.get(name)
    out: dict[str, Any] = {"T": kind, "S": getattr(model, "symbol", None),
                           "t": getattr(model, "timestamp", None)}
    for attr, key in _SDK_FIELDS.items():
        if hasattr(model, attr):
            out[key] = getattr(model, attr)
    return out


class MessageBuffer:
    """Accumulates valid stream messages between flushes; counts what it drops."""

    def __init__(self) -> None:
        self.symbol_ids: dict[str, int] = {}
        self.contract_ids: dict[str, tuple[int, int]] = {}
        self._ticks: list[tuple[int, int, float, float, float, float, float, float]] = []
        self._tick_ts: list[int] = []
        self._options: list[tuple[int, int, int, float, float, float, float, float, float]] = []
        self._option_ts: list[int] = []
        self._bars: list[tuple[int, float, float, float, float, float]] = []
        self._bar_ts: list[int] = []
        self.accepted = 0
        self.dropped: Counter[str] = Counter()

    def set_universe(self, symbols: Iterable[str],
                     chains: Mapping[str, OptionContracts] | None = None) -> None:
        """Set the symbol and contract addressing (symbol_id, contract_index)."""
        self.symbol_ids = {s: i for i, s in enumerate(symbols)}
        if chains is not None:
            self.contract_ids = {
                c: (self.symbol_ids[u], j)
                for u, chain in chains.items() if u in self.symbol_ids
                for j, c in enumerate(chain.contract)
            }

    def add(self, message: object, *, option: bool = False) -> bool:
        """Buffer one message; return False (and count it) when it is dropped."""
        if not isinstance(message, dict):
            if hasattr(message, "symbol") and hasattr(message, "timestamp"):
                message = from_sdk(message)
            else:
                self.dropped["malformed"] += 1
                return False
        assert isinstance(message, dict)
        kind = message.get("T")
        symbol = message.get("S")
        ts = timestamp_ns(message.get("t"))
        if kind == "u":  # an updated (corrected) bar replaces the bar of its minute
            kind = "b"
        if kind not in ("t", "q", "b") or (option and kind == "b"):
            self.dropped["unexpected_type"] += 1
            return False
        if not isinstance(symbol, str) or ts is None:
            self.dropped["malformed"] += 1
            return False
        if option:
            address = self.contract_ids.get(symbol)
            if address is None:
                self.dropped["unknown_symbol"] += 1
                return False
            return self._add_option(kind, address, ts, message)
        sid = self.symbol_ids.get(symbol)
        if sid is None:
            self.dropped["unknown_symbol"] += 1
            return False
        if kind == "b":
            values = [_number(message.get(k)) for k in ("o", "h", "l", "c", "v")]
            if any(v is None for v in values):
                self.dropped["malformed"] += 1
                return False
            o, h, low, c, v = (float(x) for x in values)  # type: ignore[arg-type]
            self._bars.append((sid, o, h, low, c, v))
            self._bar_ts.append(ts)
        else:
            row = self._tick_row(kind, message)
            if row is None:
                return False
            self._ticks.append((sid, *row))
            self._tick_ts.append(ts)
        self.accepted += 1
        return True

    def _tick_row(self, kind: str, message: dict[str, Any]
                  ) -> tuple[int, float, float, float, float, float, float] | None:
        if kind == "t":
            price, size = _number(message.get("p")), _number(message.get("s"))
            if price is None or size is None:
                self.dropped["malformed"] += 1
                return None
            return (TRADE, price, size, NAN, NAN, NAN, NAN)
        values = [_number(message.get(k)) for k in ("bp", "ap", "bs", "as")]
        if any(v is None for v in values):
            self.dropped["malformed"] += 1
            return None
        bid, ask, bid_size, ask_size = (float(x) for x in values)  # type: ignore[arg-type]
        return (QUOTE, NAN, NAN, bid, ask, bid_size, ask_size)

    def _add_option(self, kind: str, address: tuple[int, int], ts: int,
                    message: dict[str, Any]) -> bool:
        row = self._tick_row(kind, message)
        if row is None:
            return False
        self._options.append((address[0], address[1], *row))
        self._option_ts.append(ts)
        self.accepted += 1
        return True

    def __len__(self) -> int:
        return len(self._tick_ts) + len(self._option_ts) + len(self._bar_ts)

    def drain(self) -> tuple[TickBatch, OptionTickBatch, BarBatch]:
        """Return everything buffered as batches (each sorted by time) and clear."""
        ticks, options, bars = TickBatch.empty(), OptionTickBatch.empty(), BarBatch.empty()
        if self._ticks:
            m = np.array(self._ticks, dtype=np.float64)
            ticks = TickBatch.from_columns(
                symbol_id=m[:, 0], kind=m[:, 1], ts_ns=np.array(self._tick_ts, np.int64),
                price=m[:, 2], size=m[:, 3], bid=m[:, 4], ask=m[:, 5], bid_size=m[:, 6],
                ask_size=m[:, 7])
        if self._options:
            m = np.array(self._options, dtype=np.float64)
            options = OptionTickBatch.from_columns(
                symbol_id=m[:, 0], contract_index=m[:, 1], kind=m[:, 2],
                ts_ns=np.array(self._option_ts, np.int64), price=m[:, 3], size=m[:, 4],
                bid=m[:, 5], ask=m[:, 6], bid_size=m[:, 7], ask_size=m[:, 8])
        if self._bars:
            m = np.array(self._bars, dtype=np.float64)
            bars = BarBatch.from_columns(
                symbol_id=m[:, 0], ts_ns=np.array(self._bar_ts, np.int64), open=m[:, 1],
                high=m[:, 2], low=m[:, 3], close=m[:, 4], volume=m[:, 5])
        self._ticks, self._tick_ts, self._options, self._option_ts = [], [], [], []
        self._bars, self._bar_ts = [], []
        return _sorted(ticks), _sorted(options), _sorted(bars)


def _sorted(batch: Any) -> Any:
    if len(batch) > 1 and np.any(np.diff(batch.ts_ns) < 0):
        return batch.take(np.argsort(batch.ts_ns, kind="stable"))
    return batch


def bars_from_barset(data: Mapping[str, list[Any]], symbol_ids: Mapping[str, int]) -> BarBatch:
    """Convert alpaca-py ``BarSet.data`` (symbol → list of ``Bar``) to a time-sorted batch."""
    sid: list[int] = []
    ts: list[int] = []
    rows: list[tuple[float, float, float, float, float]] = []
    for symbol, bars in data.items():
        if symbol not in symbol_ids:
            continue
        for bar in bars:
            t = timestamp_ns(bar.timestamp)
            if t is None:
                continue
            sid.append(symbol_ids[symbol])
            ts.append(t)
            rows.append((bar.open, bar.high, bar.low, bar.close, bar.volume))
    if not rows:
        return BarBatch.empty()
    m = np.array(rows, dtype=np.float64)
    batch = BarBatch.from_columns(symbol_id=sid, ts_ns=ts, open=m[:, 0], high=m[:, 1],
                                  low=m[:, 2], close=m[:, 3], volume=m[:, 4])
    return batch.take(np.lexsort((batch.symbol_id, batch.ts_ns)))


def build_chain(
    underlying: str, contracts: Iterable[Any], snapshots: Mapping[str, Any]
) -> OptionContracts:
    """Merge the contracts endpoint (definitions, open interest) with chain snapshots.

    ``contracts`` are alpaca-py ``OptionContract`` models, ``snapshots`` maps
    OCC symbol → ``OptionsSnapshot``. Contracts only in the snapshots are kept
    (open interest 0). Ordered by expiration, strike, call before put.
    """
    from market.feeds.base import parse_occ_symbol  # noqa: PLC0415 - local helper

    rows: dict[str, tuple[np.datetime64, float, bool, int]] = {}
    for c in contracts:
        oi = int(float(c.open_interest)) if c.open_interest not in (None, "") else 0
        kind = getattr(c.type, "value", c.type)
        rows[c.symbol] = (np.datetime64(c.expiration_date, "D"), float(c.strike_price),
                          str(kind) == "call", oi)
    for symbol in snapshots:
        if symbol not in rows:
            try:
                _, expiration, is_call, strike = parse_occ_symbol(symbol)
            except ValueError:
                continue
            rows[symbol] = (expiration, strike, is_call, 0)
    order = sorted(rows, key=lambda s: (rows[s][0], rows[s][1], not rows[s][2]))
    iv = np.full(len(order), np.nan)
    greeks = {g: np.full(len(order), np.nan) for g in ("delta", "gamma", "theta", "vega", "rho")}
    for j, symbol in enumerate(order):
        snap = snapshots.get(symbol)
        if snap is None:
            continue
        if snap.implied_volatility is not None:
            iv[j] = snap.implied_volatility
        if snap.greeks is not None:
            for g, col in greeks.items():
                value = getattr(snap.greeks, g, None)
                if value is not None:
                    col[j] = value
    vendor = bool(snapshots)
    return OptionContracts(
        underlying=underlying, contract=order,
        expiration=np.array([rows[s][0] for s in order], dtype="datetime64[D]"),
        strike=np.array([rows[s][1] for s in order], dtype=np.float64),
        is_call=np.array([rows[s][2] for s in order], dtype=np.bool_),
        open_interest=np.array([rows[s][3] for s in order], dtype=np.int64),
        vendor_implied_volatility=iv if vendor else None,
        vendor_greeks=greeks if vendor else None,
    )


def snapshot_messages(snapshots: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the latest quote and trade of each option snapshot as wire-shaped messages."""
    out: list[dict[str, Any]] = []
    for symbol, snap in snapshots.items():
        quote, trade = snap.latest_quote, snap.latest_trade
        if quote is not None:
            out.append({"T": "q", "S": symbol, "t": quote.timestamp, "bp": quote.bid_price,
                        "ap": quote.ask_price, "bs": quote.bid_size, "as": quote.ask_size})
        if trade is not None:
            out.append({"T": "t", "S": symbol, "t": trade.timestamp, "p": trade.price,
                        "s": trade.size})
    return out
