"""The feed contract: columnar batches of ticks that cross the actor boundary.

A feed (simulator, Alpaca, replay) turns the outside world into three kinds of
batch, each a set of equal-length numpy columns (cheap to pickle, zero-copy in
Ray's object store, one-to-one with an Arrow table for Parquet recording):

* :class:`TickBatch` — stock trades and quotes, ``symbol_id`` indexing the
  feed's universe (``Feed.symbols``);
* :class:`OptionTickBatch` — option trades and quotes, addressed by underlying
  ``symbol_id`` and ``contract_index`` into that underlying's
  :class:`OptionContracts`;
* :class:`BarBatch` — completed 1-minute bars (warm-up history, backfill).

Times are ``int64`` nanoseconds since the Unix epoch, UTC. Rows are in event
time order within a batch. Unused price/size columns of a row are NaN.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt

TRADE: int = 0
QUOTE: int = 1

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND


class _Columns:
    """Mixin for dataclasses whose fields are equal-length numpy columns."""

    dtypes: ClassVar[dict[str, Any]]

    def __len__(self) -> int:
        first = fields(self)[0].name  # type: ignore[arg-type]
        return len(getattr(self, first))

    @classmethod
    def empty(cls) -> Self:
        """Return a batch with no rows."""
        return cls(**{name: np.empty(0, dtype) for name, dtype in cls.dtypes.items()})

    @classmethod
    def from_columns(cls, **columns: Any) -> Self:
        """Build a batch, casting every column to its declared dtype; lengths must match."""
        arrays = {name: np.asarray(columns[name], dtype) for name, dtype in cls.dtypes.items()}
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"{cls.__name__} columns differ in length: {sorted(lengths)}")
        return cls(**arrays)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Self:
        """Return the rows selected by an index or boolean mask."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})  # type: ignore[arg-type]

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        """Concatenate batches of the same kind, in order."""
        if not parts:
            return cls.empty()
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in cls.dtypes})

    def to_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        """Return the columns by name (for Arrow/Parquet)."""
        return {name: getattr(self, name) for name in self.dtypes}


@dataclass(slots=True)
class TickBatch(_Columns):
    """Stock trades (``kind == TRADE``: price, size) and quotes (bid/ask and sizes)."""

    kind: U8
    symbol_id: I32
    ts_ns: I64
    price: F64
    size: F64
    bid: F64
    ask: F64
    bid_size: F64
    ask_size: F64

    dtypes: ClassVar[dict[str, Any]] = {
        "kind": np.uint8, "symbol_id": np.int32, "ts_ns": np.int64, "price": np.float64,
        "size": np.float64, "bid": np.float64, "ask": np.float64, "bid_size": np.float64,
        "ask_size": np.float64,
    }


@dataclass(slots=True)
class OptionTickBatch(_Columns):
    """Option trades and quotes; ``contract_index`` indexes the underlying's contracts."""

    kind: U8
    symbol_id: I32
    contract_index: I32
    ts_ns: I64
    price: F64
    size: F64
    bid: F64
    ask: F64
    bid_size: F64
    ask_size: F64

    dtypes: ClassVar[dict[str, Any]] = {
        "kind": np.uint8, "symbol_id": np.int32, "contract_index": np.int32,
        "ts_ns": np.int64, "price": np.float64, "size": np.float64, "bid": np.float64,
        "ask": np.float64, "bid_size": np.float64, "ask_size": np.float64,
    }


@dataclass(slots=True)
class BarBatch(_Columns):
    """Completed OHLCV bars; ``ts_ns`` is the bar's start, ``timeframe_s`` its length."""

    symbol_id: I32
    ts_ns: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64

    dtypes: ClassVar[dict[str, Any]] = {
        "symbol_id": np.int32, "ts_ns": np.int64, "open": np.float64, "high": np.float64,
        "low": np.float64, "close": np.float64, "volume": np.float64,
    }


@dataclass(slots=True)
class OptionContracts:
    """The listed contracts of one underlying, in a fixed order (``contract_index``).

    ``expiration`` is ``datetime64[D]``; options expire at 16:00 New York time,
    taken as 20:00 UTC (``market.greeks`` converts to years). ``open_interest``
    is the start-of-day figure, refreshed daily.
    """

    underlying: str
    contract: list[str]
    expiration: npt.NDArray[np.datetime64]
    strike: F64
    is_call: npt.NDArray[np.bool_]
    open_interest: I64
    # Implied volatility and Greeks as the data vendor supplies them (Alpaca), kept
    # beside marketray's own; NaN where the vendor has none.
    vendor_implied_volatility: F64 | None = None
    vendor_greeks: dict[str, F64] | None = None

    def __len__(self) -> int:
        return len(self.contract)


@dataclass(slots=True)
class FeedBatch:
    """What a feed yields each period; any part may be empty."""

    ticks: TickBatch
    option_ticks: OptionTickBatch
    bars: BarBatch
    # Contracts whose definitions or open interest changed since the last batch.
    chains: dict[str, OptionContracts]


@dataclass(slots=True)
class FeedStatus:
    """Health of a feed as shown on ``/health``."""

    name: str
    connected: bool
    last_message_ns: int | None
    messages: int
    dropped: int
    error: str | None = None
    detail: dict[str, Any] | None = None


class Feed(Protocol):
    """A source of market data. One instance lives in the feed actor.

    ``symbols`` is the universe: ``symbol_id`` in every batch indexes it.
    ``warmup`` returns the history and chains to seed state with before
    ``stream`` starts; ``stream`` yields a :class:`FeedBatch` per period until
    closed.
    """

    symbols: tuple[str, ...]

    async def warmup(self) -> FeedBatch: ...

    def stream(self) -> AsyncIterator[FeedBatch]: ...

    def status(self) -> FeedStatus: ...

    async def close(self) -> None: ...


class InterestFeed(Feed, Protocol):
    """A feed whose upstream subscriptions follow what clients ask for (optional).

    ``set_interest`` receives the full set of symbols clients are subscribed to
    now; the feed keeps its subscriptions within its budget (configured symbols
    always). The feed actor calls it when present (``hasattr(feed, "set_interest")``).
    """

    async def set_interest(self, symbols: set[str]) -> None: ...


def occ_symbol(underlying: str, expiration: np.datetime64, is_call: bool, strike: float) -> str:
    """Return the OCC option symbol, e.g. ``AAPL251219C00200000``."""
    day = np.asarray(expiration).astype("datetime64[D]").item()
    return f"{underlying}{day:%y%m%d}{'C' if is_call else 'P'}{round(strike * 1000):08d}"


def parse_occ_symbol(contract: str) -> tuple[str, np.datetime64, bool, float]:
    """Split an OCC symbol into (underlying, expiration, is_call, strike)."""
    body = contract.strip()
    if len(body) < 16:
        raise ValueError(f"not an OCC option symbol: {contract!r}")
    root, date_part, cp, strike = body[:-15], body[-15:-9], body[-9], body[-8:]
    if cp not in "CP" or not (date_part.isdigit() and strike.isdigit()) or not root:
        raise ValueError(f"not an OCC option symbol: {contract!r}")
    expiration = np.datetime64(f"20{date_part[:2]}-{date_part[2:4]}-{date_part[4:]}", "D")
    return root, expiration, cp == "C", int(strike) / 1000.0
