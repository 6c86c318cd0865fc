"""Record every batch a feed yields to Parquet, for replay and research.

Layout under ``root`` (one directory per recording session)::

    root/<session>/ticks/part-000000.parquet        stock trades and quotes
    root/<session>/option_ticks/part-000000.parquet option trades and quotes
    root/<session>/bars/part-000000.parquet         1-minute bars
    root/<session>/chains/part-000000.parquet       option contract definitions

Every row carries ``batch`` (the feed batch's sequence number, so replay can
rebuild the same batches), ``warmup`` (whether the batch came from
``Feed.warmup``), and the symbol *name* (``symbol``; ``contract`` for options)
rather than only the feed's ``symbol_id``. Rows are buffered and written as
large row groups (``row_group_rows``) or when ``flush_interval_s`` has passed;
a file is closed and a new one started every ``rotate_rows`` rows, so a crash
loses at most the open file's footer (replay skips unreadable files).

``root`` is a path or a :class:`core.storage.Storage` (a shared volume or an object
store, ``Settings.storage("recordings")``). On an object store a file becomes visible
when it is closed, so a crash there loses the open file's rows: rotate sooner.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.storage import Storage
from market.feeds.base import BarBatch, FeedBatch, OptionContracts, OptionTickBatch, TickBatch

if TYPE_CHECKING:
    from core.settings import Settings

KINDS = ("ticks", "option_ticks", "bars", "chains")
GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho")


def _ids_to_names(ids: np.ndarray[Any, Any], symbols: Sequence[str]) -> pa.Array:
    names = np.asarray(symbols, dtype=object)
    return pa.DictionaryArray.from_arrays(pa.array(ids, pa.int32()), pa.array(names, pa.string()))


def _common(batch_no: int, warmup: bool, n: int) -> dict[str, pa.Array]:
    return {
        "batch": pa.array(np.full(n, batch_no, np.int64)),
        "warmup": pa.array(np.full(n, warmup, np.bool_)),
    }


def ticks_table(
    ticks: TickBatch, symbols: Sequence[str], batch_no: int = 0, warmup: bool = False
) -> pa.Table:
    """Return stock ticks as an Arrow table with a ``symbol`` name column."""
    cols = _common(batch_no, warmup, len(ticks))
    cols["symbol"] = _ids_to_names(ticks.symbol_id, symbols)
    cols.update({name: pa.array(col) for name, col in ticks.to_dict().items()})
    return pa.table(cols)


def option_ticks_table(
    ticks: OptionTickBatch,
    symbols: Sequence[str],
    chains: dict[str, OptionContracts],
    batch_no: int = 0,
    warmup: bool = False,
) -> pa.Table:
    """Return option ticks as an Arrow table with ``symbol`` and OCC ``contract`` names."""
    cols = _common(batch_no, warmup, len(ticks))
    cols["symbol"] = _ids_to_names(ticks.symbol_id, symbols)
    contract = np.full(len(ticks), None, dtype=object)
    for sid in np.unique(ticks.symbol_id):
        mask = ticks.symbol_id == sid
        chain = chains.get(symbols[int(sid)])
        names = np.asarray(chain.contract if chain is not None else [], dtype=object)
        idx = ticks.contract_index[mask]
        found = np.full(len(idx), None, dtype=object)
        ok = (idx >= 0) & (idx < len(names))
        found[ok] = names[idx[ok]]
        contract[mask] = found
    cols["contract"] = pa.array(contract, pa.string())
    cols.update({name: pa.array(col) for name, col in ticks.to_dict().items()})
    return pa.table(cols)


def bars_table(
    bars: BarBatch, symbols: Sequence[str], batch_no: int = 0, warmup: bool = False
) -> pa.Table:
    """Return bars as an Arrow table with a ``symbol`` name column."""
    cols = _common(batch_no, warmup, len(bars))
    cols["symbol"] = _ids_to_names(bars.symbol_id, symbols)
    cols.update({name: pa.array(col) for name, col in bars.to_dict().items()})
    return pa.table(cols)


def chains_table(
    chains: dict[str, OptionContracts], batch_no: int = 0, warmup: bool = False
) -> pa.Table:
    """Return option contract definitions (one row per contract) as an Arrow table."""
    parts: list[pa.Table] = []
    for chain in chains.values():
        n = len(chain)
        nan = np.full(n, np.nan)
        greeks = chain.vendor_greeks or {}
        cols = _common(batch_no, warmup, n)
        cols.update({
            "underlying": pa.array([chain.underlying] * n, pa.string()),
            "contract": pa.array(chain.contract, pa.string()),
            "expiration": pa.array(chain.expiration.astype("datetime64[D]")),
            "strike": pa.array(chain.strike),
            "is_call": pa.array(chain.is_call),
            "open_interest": pa.array(chain.open_interest.astype(np.int64)),
            "has_vendor": pa.array(np.full(n, chain.vendor_implied_volatility is not None)),
            "vendor_implied_volatility": pa.array(
                nan if chain.vendor_implied_volatility is None
                else chain.vendor_implied_volatility),
        })
        for g in GREEK_NAMES:
            cols[f"vendor_{g}"] = pa.array(greeks.get(g, nan))
        parts.append(pa.table(cols))
    return pa.concat_tables(parts) if parts else pa.table({})


class _KindWriter:
    """Buffers tables of one kind and writes them as row groups into rotating files."""

    def __init__(self, directory: Storage, row_group_rows: int, rotate_rows: int) -> None:
        self.directory = directory
        self.row_group_rows = row_group_rows
        self.rotate_rows = rotate_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._file_rows = 0
        self._part = 0
        self.rows_written = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._schema is not None and not table.schema.equals(self._schema):
            table = table.cast(self._schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._pending_rows = [], 0
        if self._writer is None:
            self.directory.makedirs()
            self._schema = table.schema
            path = self.directory.path(f"part-{self._part:06d}.parquet")
            self._writer = pq.ParquetWriter(path, table.schema, compression="zstd",
                                            filesystem=self.directory.fs)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._file_rows += table.num_rows
        self.rows_written += table.num_rows
        if self._file_rows >= self.rotate_rows:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._part += 1
            self._file_rows = 0

    def close(self) -> None:
        self.flush()
        self._close_file()


class TickRecorder:
    """Write every :class:`FeedBatch` the system ingests to Parquet under ``root``.

    ``directory`` is the session's :class:`core.storage.Storage`.

    Call :meth:`write` with each batch and the feed's current ``symbols``
    (``symbol_id`` indexes it) and :meth:`close` at shutdown (it flushes and
    finalises the files). Not thread-safe; one recorder per feed actor.
    """

    def __init__(
        self,
        root: Path | str | Storage,
        *,
        session: str | None = None,
        row_group_rows: int = 131_072,
        rotate_rows: int = 2_000_000,
        flush_interval_s: float = 10.0,
    ) -> None:
        stamp = session or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.directory = (root if isinstance(root, Storage) else Storage(root)) / stamp
        self.directory.makedirs()
        self._writers = {k: _KindWriter(self.directory / k, row_group_rows, rotate_rows)
                         for k in KINDS}
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self._chains: dict[str, OptionContracts] = {}
        self._batch_no = 0

    @property
    def rows_written(self) -> dict[str, int]:
        """Rows written to disk so far, per kind (excludes the buffered rows)."""
        return {k: w.rows_written for k, w in self._writers.items()}

    def write(self, batch: FeedBatch, symbols: Sequence[str], *, warmup: bool = False) -> None:
        """Record one batch; ``symbols`` is the feed's universe at the time of the batch."""
        n = self._batch_no
        self._batch_no += 1
        if batch.chains:
            self._chains.update(batch.chains)
            self._writers["chains"].add(chains_table(batch.chains, n, warmup))
        if len(batch.ticks):
            self._writers["ticks"].add(ticks_table(batch.ticks, symbols, n, warmup))
        if len(batch.option_ticks):
            self._writers["option_ticks"].add(
                option_ticks_table(batch.option_ticks, symbols, self._chains, n, warmup))
        if len(batch.bars):
            self._writers["bars"].add(bars_table(batch.bars, symbols, n, warmup))
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as row groups now."""
        for writer in self._writers.values():
            writer.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and finalise every open file."""
        for writer in self._writers.values():
            writer.close()


def recorder_from_settings(settings: Settings) -> TickRecorder | None:
    """Return a recorder under ``record_dir`` (default ``<data_dir>/recordings``) when
    ``MARKETRAY_RECORD`` is on, else None."""
    if not settings.record:
        return None
    return TickRecorder(Storage(settings.record_dir) if settings.record_dir
                        else settings.storage("recordings"))
