"""Play a recording (see :mod:`market.feeds.recorder`) back as a feed.

The recorded batches come back with the same grouping and order, so the
shards see exactly what they saw live and compute the same indicators.
``speed`` paces by event time: 1 = real time, 10 = ten times faster, 0 = as
fast as the consumer takes them. The recording may be on a path, a shared volume or an
object store (see :mod:`core.storage`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import FeedError
from core.storage import Storage
from market.feeds.base import (
    BarBatch,
    FeedBatch,
    FeedStatus,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.feeds.recorder import GREEK_NAMES, KINDS

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)
_BATCH_TYPES: dict[str, Any] = {"ticks": TickBatch, "option_ticks": OptionTickBatch,
                                 "bars": BarBatch}


def session_dirs(path: Path | str | Storage) -> list[Storage]:
    """Return the recording sessions under ``path`` (itself if it is one), oldest first."""
    root = path if isinstance(path, Storage) else Storage(path)
    names = root.listdir()
    if any(k in names for k in KINDS):
        return [root]
    sessions = (root / name for name in names)
    return [s for s in sessions if any(k in s.listdir() for k in KINDS)]


@dataclass(slots=True)
class _Kind:
    """One kind's rows as numpy columns, with the row span of each batch number."""

    columns: dict[str, np.ndarray[Any, Any]]
    batch: np.ndarray[Any, Any]
    warmup: np.ndarray[Any, Any]

    def span(self, batch_no: int) -> slice:
        lo = int(np.searchsorted(self.batch, batch_no, "left"))
        hi = int(np.searchsorted(self.batch, batch_no, "right"))
        return slice(lo, hi)


class ReplayFeed:
    """A :class:`market.feeds.base.Feed` reading a recorded directory.

    ``symbols`` (the configured universe) come first in ``self.symbols``, then
    any other symbol the recording holds. With ``hold_open`` the stream stays
    open after the last batch (the service keeps serving the final state)
    until :meth:`close`; without it the iterator ends.
    """

    def __init__(
        self,
        path: Path | str | Storage,
        *,
        speed: float = 1.0,
        symbols: Sequence[str] = (),
        hold_open: bool = False,
    ) -> None:
        self.storage = path if isinstance(path, Storage) else Storage(path)
        self.path = self.storage.location
        self.hold_open = hold_open
        self._finished = False
        if not self.storage.is_dir():
            raise FeedError(f"replay directory {self.path} does not exist")
        self.speed = speed
        self.dropped_files = 0
        tables = self._read_tables()
        names: list[str] = list(dict.fromkeys(symbols))
        for kind in ("ticks", "option_ticks", "bars"):
            if kind in tables:
                names += [str(s) for s in pc.unique(tables[kind]["symbol"].cast(pa.string()))
                          .to_pylist() if s is not None]
        if "chains" in tables:
            names += [str(s) for s in pc.unique(tables["chains"]["underlying"]).to_pylist()]
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(names))
        universe = pa.array(self.symbols, pa.string())
        self._kinds: dict[str, _Kind] = {}
        for kind, table in tables.items():
            if kind == "chains":
                continue
            cols = {name: table[name].to_numpy() for name in _BATCH_TYPES[kind].dtypes}
            cols["symbol_id"] = pc.index_in(table["symbol"].cast(pa.string()),
                                            value_set=universe).to_numpy(zero_copy_only=False)
            self._kinds[kind] = _Kind(cols, table["batch"].to_numpy(),
                                      table["warmup"].to_numpy(zero_copy_only=False))
        self._chains = self._chain_versions(tables.get("chains"))
        batch_numbers = [k.batch for k in self._kinds.values()] + [
            np.fromiter(self._chains, np.int64)]
        all_batches = np.unique(np.concatenate(batch_numbers)) if batch_numbers else np.empty(0)
        warm = set()
        for k in self._kinds.values():
            warm |= set(np.unique(k.batch[k.warmup]).tolist())
        warm |= {b for b, (is_warm, _) in self._chains.items() if is_warm}
        self._warmup_batches = sorted(warm)
        self._stream_batches = [int(b) for b in all_batches if int(b) not in warm]
        self._emitted_batches = 0
        self._messages = 0
        self._last_ns: int | None = None
        self._playing = False
        self._closed = False
        self._closed_event = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplayFeed:
        """Build from ``MARKETRAY_REPLAY_DIR`` (default ``<data_dir>/recordings``)."""
        named = settings.replay_dir or settings.record_dir
        path = Storage(named) if named else settings.storage("recordings")
        return cls(path, speed=settings.replay_speed, symbols=settings.symbols, hold_open=True)

    def _read_tables(self) -> dict[str, pa.Table]:
        sessions = session_dirs(self.storage)
        if not sessions:
            raise FeedError(f"no recording found under {self.path}")
        out: dict[str, list[pa.Table]] = {}
        offset = 0
        for session in sessions:
            top = offset
            for kind in KINDS:
                for name in session.listdir(kind):
                    if not name.endswith(".parquet"):
                        continue
                    file = session.uri(kind, name)
                    try:
                        with session.open_input(f"{kind}/{name}") as source:
                            table = pq.read_table(source)
                    except (OSError, pa.ArrowException) as exc:
                        log.warning("skipping unreadable recording file %s: %s", file, exc)
                        self.dropped_files += 1
                        continue
                    if table.num_rows == 0:
                        continue
                    table = table.set_column(table.schema.get_field_index("batch"), "batch",
                                             pc.add(table["batch"], offset))
                    top = max(top, pc.max(table["batch"]).as_py() + 1)
                    out.setdefault(kind, []).append(table)
            offset = top
        merged: dict[str, pa.Table] = {}
        for kind, parts in out.items():
            table = pa.concat_tables(parts, promote_options="permissive")
            merged[kind] = table.sort_by([("batch", "ascending")]) if kind != "chains" else table
        return merged

    @staticmethod
    def _chain_versions(
        table: pa.Table | None,
    ) -> dict[int, tuple[bool, dict[str, OptionContracts]]]:
        if table is None:
            return {}
        versions: dict[int, tuple[bool, dict[str, OptionContracts]]] = {}
        batch = table["batch"].to_numpy()
        underlying = np.asarray(table["underlying"].to_pylist(), dtype=object)
        contract = np.asarray(table["contract"].to_pylist(), dtype=object)
        expiration = table["expiration"].to_numpy().astype("datetime64[D]")
        strike = table["strike"].to_numpy()
        is_call = table["is_call"].to_numpy(zero_copy_only=False)
        open_interest = table["open_interest"].to_numpy()
        warm = table["warmup"].to_numpy(zero_copy_only=False)
        has_vendor = table["has_vendor"].to_numpy(zero_copy_only=False)
        iv = table["vendor_implied_volatility"].to_numpy()
        greeks = {g: table[f"vendor_{g}"].to_numpy() for g in GREEK_NAMES}
        for b in np.unique(batch):
            in_batch = batch == b
            chains: dict[str, OptionContracts] = {}
            for u in dict.fromkeys(underlying[in_batch].tolist()):
                m = in_batch & (underlying == u)
                vendor = bool(has_vendor[m].any())
                chains[str(u)] = OptionContracts(
                    underlying=str(u), contract=[str(c) for c in contract[m]],
                    expiration=expiration[m], strike=strike[m], is_call=is_call[m],
                    open_interest=open_interest[m].astype(np.int64),
                    vendor_implied_volatility=iv[m] if vendor else None,
                    vendor_greeks={g: v[m] for g, v in greeks.items()} if vendor else None,
                )
            versions[int(b)] = (bool(warm[in_batch].any()), chains)
        return versions

    def _batch(self, numbers: Sequence[int]) -> FeedBatch:
        parts: dict[str, Any] = {}
        for kind, batch_type in _BATCH_TYPES.items():
            data = self._kinds.get(kind)
            if data is None:
                parts[kind] = batch_type.empty()
                continue
            slices = [data.span(n) for n in numbers]
            parts[kind] = batch_type.concat([
                batch_type(**{c: data.columns[c][s] for c in batch_type.dtypes}) for s in slices
            ]) if len(slices) > 1 else batch_type(
                **{c: data.columns[c][slices[0]] for c in batch_type.dtypes})
        chains: dict[str, OptionContracts] = {}
        for n in numbers:
            if n in self._chains:
                chains.update(self._chains[n][1])
        return FeedBatch(ticks=parts["ticks"], option_ticks=parts["option_ticks"],
                         bars=parts["bars"], chains=chains)

    @property
    def total_batches(self) -> int:
        """Number of stream batches in the recording (warm-up excluded)."""
        return len(self._stream_batches)

    async def warmup(self) -> FeedBatch:
        """Return the recorded warm-up (bars and chains) as one batch."""
        if not self._warmup_batches:
            return FeedBatch(TickBatch.empty(), OptionTickBatch.empty(), BarBatch.empty(), {})
        return self._batch(self._warmup_batches)

    async def stream(self) -> AsyncIterator[FeedBatch]:
        """Yield the recorded batches in order, paced by event time / ``speed``."""
        self._playing = True
        start_wall: float | None = None
        start_event: int | None = None
        try:
            for n in self._stream_batches:
                if self._closed:
                    return
                batch = self._batch([n])
                event = _event_time(batch)
                if self.speed > 0 and event is not None:
                    if start_event is None or start_wall is None:
                        start_event, start_wall = event, time.monotonic()
                    due = start_wall + (event - start_event) / 1e9 / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif self._emitted_batches % 64 == 0:
                    await asyncio.sleep(0)
                self._emitted_batches += 1
                self._messages += len(batch.ticks) + len(batch.option_ticks) + len(batch.bars)
                if event is not None:
                    self._last_ns = event
                yield batch
            self._finished = True
            self._playing = False
            log.info("replay of %s finished (%d batches)", self.path, self._emitted_batches)
            if self.hold_open:  # stay up: the service keeps serving the final state
                await self._closed_event.wait()
        finally:
            self._playing = False

    def status(self) -> FeedStatus:
        """Report progress through the recording."""
        return FeedStatus(
            name="replay", connected=self._playing, last_message_ns=self._last_ns,
            messages=self._messages, dropped=self.dropped_files,
            detail={"path": str(self.path), "speed": self.speed, "finished": self._finished,
                    "batches_done": self._emitted_batches, "batches_total": self.total_batches},
        )

    async def close(self) -> None:
        """Stop playing."""
        self._closed = True
        self._closed_event.set()


def _event_time(batch: FeedBatch) -> int | None:
    times = [int(b.ts_ns.max()) for b in (batch.ticks, batch.option_ticks) if len(b)]
    return max(times) if times else None
