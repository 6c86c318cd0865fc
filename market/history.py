"""Long-term 1-minute bar history in Parquet, partitioned hive-style by date and symbol.

Layout::

    root/date=2026-11-24/symbol=AAPL/part-<seq>.parquet

Columns: ``ts_ns`` (int64 ns, bar start, UTC), ``open``, ``high``, ``low``,
``close``, ``volume``. Appends are buffered and written as large row groups
(``flush_rows`` or ``flush_interval_s``); :meth:`HistoryStore.compact` merges
a partition's small files into one. A later write of the same minute wins (a
backfilled bar replaces a live one), both on read and on compaction. Reads go
through polars' lazy scanner over the symbol's partitions only.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

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
    """Parquet bar history under ``root``; safe to share between threads of one process."""

    def __init__(
        self, root: Path | str, *, flush_rows: int = 100_000, flush_interval_s: float = 60.0
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
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
            directory.mkdir(parents=True, exist_ok=True)
            _write_atomic(part.select(COLUMNS), directory / f"part-{seq}.parquet")

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

    def _partition(self, symbol: str, day: date) -> Path:
        return self.root / f"date={day.isoformat()}" / f"symbol={symbol}"

    # Reading.

    def _files(self, symbol: str, start_ns: int | None, end_ns: int | None) -> list[Path]:
        first = _day(start_ns) if start_ns is not None else None
        last = _day(end_ns) if end_ns is not None else None
        files: list[Path] = []
        for day_dir in sorted(self.root.glob("date=*")):
            try:
                day = date.fromisoformat(day_dir.name[5:])
            except ValueError:
                continue
            if (first and day < first) or (last and day > last):
                continue
            files += sorted((day_dir / f"symbol={symbol}").glob("part-*.parquet"))
        return files

    def scan(self, symbol: str, *, start_ns: int | None = None,
             end_ns: int | None = None) -> pl.LazyFrame:
        """Return a lazy frame of the symbol's stored bars (flushed only), duplicates resolved."""
        files = self._files(symbol, start_ns, end_ns)
        if not files:
            return pl.LazyFrame(schema={c: pl.Int64 if c == "ts_ns" else pl.Float64
                                        for c in COLUMNS})
        lazy = pl.scan_parquet(files).with_row_index("_row")
        if start_ns is not None:
            lazy = lazy.filter(pl.col("ts_ns") >= start_ns)
        if end_ns is not None:
            lazy = lazy.filter(pl.col("ts_ns") < end_ns)
        return (lazy.sort("ts_ns", "_row").unique("ts_ns", keep="last", maintain_order=True)
                .drop("_row"))

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
        return sorted({p.name[7:] for p in self.root.glob("date=*/symbol=*")})

    # Maintenance.

    def compact(self, *, min_files: int = 2) -> int:
        """Merge each partition with ``min_files`` or more files into one; return files merged."""
        self.flush()
        merged = 0
        for directory in sorted(self.root.glob("date=*/symbol=*")):
            files = sorted(directory.glob("part-*.parquet"))
            if len(files) < min_files:
                continue
            frame = (pl.scan_parquet(files).with_row_index("_row").collect()
                     .sort("ts_ns", "_row").unique("ts_ns", keep="last", maintain_order=True)
                     .drop("_row"))
            # Named after the newest input so later appends still sort after it.
            newest = files[-1].stem.removeprefix("part-")
            target = directory / f"part-{newest}-c.parquet"
            _write_atomic(frame.select(COLUMNS), target)
            for file in files:
                if file != target:
                    file.unlink()
            merged += len(files)
        return merged

    def apply_retention(
        self, days: int, archive_dir: Path | str | None = None, *, today: date | None = None
    ) -> list[str]:
        """Remove (or move under ``archive_dir``) date partitions older than ``days`` days.

        Returns the partition names (``date=YYYY-MM-DD``) affected.
        """
        self.flush()
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=days)
        affected: list[str] = []
        for day_dir in sorted(self.root.glob("date=*")):
            try:
                day = date.fromisoformat(day_dir.name[5:])
            except ValueError:
                continue
            if day >= cutoff:
                continue
            if archive_dir is not None:
                target = Path(archive_dir) / day_dir.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    for sym_dir in day_dir.iterdir():
                        dest = target / sym_dir.name
                        dest.mkdir(parents=True, exist_ok=True)
                        for file in sym_dir.iterdir():
                            shutil.move(str(file), dest / file.name)
                    shutil.rmtree(day_dir)
                else:
                    shutil.move(str(day_dir), target)
            else:
                shutil.rmtree(day_dir)
            affected.append(day_dir.name)
        return affected


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, statistics=True)
    os.replace(tmp, path)
