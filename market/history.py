"""Long-term 1-minute bar history in Parquet, partitioned hive-style by date and symbol.

Layout::

    root/date=2026-11-24/symbol=AAPL/part-<seq>.parquet

Columns: ``ts_ns`` (int64 ns, bar start, UTC), ``open``, ``high``, ``low``,
``close``, ``volume``. Appends are buffered and written as large row groups
(``flush_rows`` or ``flush_interval_s``); :meth:`HistoryStore.compact` merges
a partition's small files into one. A later write of the same minute wins (a
backfilled bar replaces a live one), both on read and on compaction. Reads go
through a pyarrow dataset over the symbol's partitions only.

``root`` is a path or a :class:`core.storage.Storage` (a shared volume or an object
store: ``Settings.storage("history")``), so a shard restarted on another node reads
the bars its predecessor wrote.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as ds

from core.storage import Storage
from market.feeds.base import BarBatch

NS_PER_DAY = 86_400 * 1_000_000_000
COLUMNS = ("ts_ns", "open", "high", "low", "close", "volume")
ROW_GROUP_ROWS = 256 * 1024
WRITE_THREADS = min(8, (os.cpu_count() or 2) * 2)


def _day(ts_ns: int) -> date:
    return date(1970, 1, 1) + timedelta(days=ts_ns // NS_PER_DAY)


def _seq() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


class HistoryStore:
    """Parquet bar history under ``root``; safe to share between threads of one process.

    Several processes may append to one store (each file has a unique name); a later
    write of the same minute wins.
    """

    def __init__(
        self, root: Path | str | Storage, *, flush_rows: int = 100_000,
        flush_interval_s: float = 60.0,
    ) -> None:
        self.storage = root if isinstance(root, Storage) else Storage(root)
        self.storage.makedirs()
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._last_flush = time.monotonic()
        self._lock = threading.RLock()

    # Writing.

    def append_bars(self, symbols: Sequence[str], bars: BarBatch) -> None:
        """Add closed bars; ``bars.symbol_id`` indexes ``symbols``. Buffered; see :meth:`flush`."""
        if len(bars) == 0:
            return
        names = np.asarray(symbols, dtype=object)[bars.symbol_id]
        frame = pl.DataFrame({"symbol": names.astype(str), **bars.to_dict()}).drop("symbol_id")
        with self._lock:
            self._pending.append(frame)
            self._pending_rows += frame.height
            due = time.monotonic() - self._last_flush >= self.flush_interval_s
            if self._pending_rows >= self.flush_rows or due:
                self.flush()

    def flush(self) -> int:
        """Write buffered bars to their partitions now; return the rows written."""
        with self._lock:
            if not self._pending:
                self._last_flush = time.monotonic()
                return 0
            frame = pl.concat(self._pending)
            self._pending, self._pending_rows = [], 0
            self._last_flush = time.monotonic()
        frame = frame.with_columns(
            (pl.col("ts_ns") // NS_PER_DAY).alias("_day")).sort("symbol", "_day", "ts_ns",
                                                               maintain_order=True)
        seq = _seq()

        def write(key: tuple[object, ...], part: pl.DataFrame) -> None:
            symbol, day = key
            directory = self._partition(str(symbol), _day(int(day) * NS_PER_DAY))  # type: ignore[call-overload]
            self._write(part.select(COLUMNS), f"{directory}/part-{seq}.parquet")

        groups = list(frame.group_by("symbol", "_day", maintain_order=True))
        if len(groups) < 8:
            for key, part in groups:
                write(key, part)
        else:  # many small partitions: polars' writer releases the GIL, so overlap them
            with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
                list(pool.map(lambda item: write(*item), groups))
        return frame.height

    def close(self) -> None:
        """Flush buffered bars."""
        self.flush()

    @property
    def location(self) -> str:
        """Return where the store lives (a path or URI)."""
        return self.storage.location

    def _partition(self, symbol: str, day: date) -> str:
        return f"date={day.isoformat()}/symbol={symbol}"

    def _days(self) -> list[tuple[date, str]]:
        """Return the stored date partitions as (day, directory name), oldest first."""
        days = []
        for name in self.storage.listdir():
            if not name.startswith("date="):
                continue
            try:
                days.append((date.fromisoformat(name[5:]), name))
            except ValueError:
                continue
        return sorted(days)

    def _parts(self, directory: str) -> list[str]:
        return [f"{directory}/{name}" for name in self.storage.listdir(directory)
                if name.startswith("part-") and name.endswith(".parquet")]

    # Reading.

    def _files(self, symbol: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        first = _day(start_ns) if start_ns is not None else None
        last = _day(end_ns) if end_ns is not None else None
        files: list[str] = []
        for day, name in self._days():
            if (first and day < first) or (last and day > last):
                continue
            files += self._parts(f"{name}/symbol={symbol}")
        return files

    def scan(self, symbol: str, *, start_ns: int | None = None,
             end_ns: int | None = None) -> pl.LazyFrame:
        """Return a lazy frame of the symbol's stored bars (flushed only), duplicates resolved."""
        files = self._files(symbol, start_ns, end_ns)
        if not files:
            return pl.LazyFrame(schema={c: pl.Int64 if c == "ts_ns" else pl.Float64
                                        for c in COLUMNS})
        lazy = self._scan_files(files).with_row_index("_row")
        if start_ns is not None:
            lazy = lazy.filter(pl.col("ts_ns") >= start_ns)
        if end_ns is not None:
            lazy = lazy.filter(pl.col("ts_ns") < end_ns)
        return (lazy.sort("ts_ns", "_row").unique("ts_ns", keep="last", maintain_order=True)
                .drop("_row"))

    def _scan_files(self, files: list[str]) -> pl.LazyFrame:
        """Return the files' rows in file order (later files win on duplicate minutes).

        Local files go to polars' own scanner, which reads a symbol's small day files
        about twice as fast as a pyarrow dataset (``bench/bench_history_fs.py``); other
        filesystems are read through pyarrow's.
        """
        paths = [self.storage.path(f) for f in files]
        if self.storage.is_local:
            return pl.scan_parquet(paths).select(COLUMNS)
        dataset = ds.dataset(paths, filesystem=self.storage.fs, format="parquet")
        return pl.scan_pyarrow_dataset(dataset).select(COLUMNS)

    def _write(self, frame: pl.DataFrame, relative: str) -> None:
        """Write one Parquet file whole (readers never see part of it)."""
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                            statistics=True)
        self.storage.write_bytes(relative, buffer.getbuffer())

    def read_bars(
        self,
        symbol: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
        symbol_id: int = 0,
    ) -> BarBatch:
        """Return the symbol's bars in ``[start_ns, end_ns)``, oldest first.

        With ``limit``, the newest ``limit`` bars of that range. Buffered bars
        are included. ``symbol_id`` fills the batch's id column.
        """
        frame = self.scan(symbol, start_ns=start_ns, end_ns=end_ns).collect()
        with self._lock:
            pending = [p.filter(pl.col("symbol") == symbol).drop("symbol") for p in self._pending]
        pending = [p for p in pending if p.height]
        if pending:
            extra = pl.concat(pending)
            if start_ns is not None:
                extra = extra.filter(pl.col("ts_ns") >= start_ns)
            if end_ns is not None:
                extra = extra.filter(pl.col("ts_ns") < end_ns)
            frame = (pl.concat([frame, extra.select(COLUMNS)])
                     .unique("ts_ns", keep="last", maintain_order=True).sort("ts_ns"))
        if limit is not None:
            frame = frame.tail(limit)
        return BarBatch.from_columns(symbol_id=np.full(frame.height, symbol_id),
                                     **{c: frame[c].to_numpy() for c in COLUMNS})

    def symbols(self) -> list[str]:
        """Return every symbol with stored bars."""
        return sorted({name[7:] for _, day in self._days()
                       for name in self.storage.listdir(day) if name.startswith("symbol=")})

    # Maintenance.

    def compact(self, *, min_files: int = 2) -> int:
        """Merge each partition with ``min_files`` or more files into one; return files merged."""
        self.flush()
        merged = 0
        for _, day in self._days():
            for symbol_dir in self.storage.listdir(day):
                directory = f"{day}/{symbol_dir}"
                files = self._parts(directory)
                if len(files) < min_files:
                    continue
                frame = (self._scan_files(files).with_row_index("_row").collect()
                         .sort("ts_ns", "_row").unique("ts_ns", keep="last", maintain_order=True)
                         .drop("_row"))
                # Named after the newest input so later appends still sort after it.
                newest = files[-1].rsplit("/", 1)[-1].removeprefix("part-").removesuffix(
                    ".parquet")
                target = f"{directory}/part-{newest}-c.parquet"
                self._write(frame.select(COLUMNS), target)
                for file in files:
                    if file != target:
                        self.storage.delete(file)
                merged += len(files)
        return merged

    def apply_retention(
        self, days: int, archive_dir: Path | str | Storage | None = None, *,
        today: date | None = None,
    ) -> list[str]:
        """Remove (or move under ``archive_dir``) date partitions older than ``days`` days.

        ``archive_dir`` may be on another filesystem or store (files are copied there,
        then removed here). Returns the partition names (``date=YYYY-MM-DD``) affected.
        """
        self.flush()
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=days)
        archive = None if archive_dir is None else (
            archive_dir if isinstance(archive_dir, Storage) else Storage(archive_dir))
        affected: list[str] = []
        for day, name in self._days():
            if day >= cutoff:
                continue
            if archive is not None:
                for file in self.storage.files(name):
                    relative = f"{name}/{file}"
                    archive.write_bytes(relative, self.storage.read_bytes(relative))
            self.storage.delete_dir(name)
            affected.append(name)
        return affected

