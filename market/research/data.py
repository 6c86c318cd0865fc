"""Read bars for research from the history lake or any Parquet/CSV of bars.

Accepted inputs (CONTRACT §9 columns ``symbol``, ``timestamp`` (UTC), OHLCV):

* a directory partitioned hive-style with ``symbol=<S>`` in the path (the live
  :class:`market.history.HistoryStore` layout ``date=/symbol=``, or the research layout
  ``symbol=/year=`` that ``pipelines.backfill`` writes), files holding ``ts_ns`` or
  ``timestamp``; a later file's bar for the same minute wins, as in the history store;
* a directory of, or a single, Parquet or CSV file with a ``symbol`` column.

Each function takes a location: a local path (read by polars' own scanner, which pushes
time filters into Parquet row groups), a URI (``s3://``, ``gs://``, ``file://``) or a
:class:`core.storage.Storage`. A ``file://`` URI or local Storage is read as its path;
anything else is listed and read through pyarrow's filesystem into polars, with the same
results.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from core.errors import InvalidInput, NotFound
from core.storage import Storage, StorageError, is_uri
from market.research.stats import TRADING_DAYS_PER_YEAR
from market.research.strategies import Bars

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
NS_PER_DAY = 86_400 * 1_000_000_000
_SYMBOL_DIR = re.compile(r"(?:^|/)symbol=([^/]+)(?:/|$)")

_RESEARCH_FILE = re.compile(r"^symbol=[^/]+/year=[^/]+/bars\.parquet$")

Location = Path | str | Storage


@dataclass(frozen=True)
class SymbolBars:
    """One symbol's bars with their bar-start times (int64 ns UTC), oldest first."""

    symbol: str
    timestamp_ns: npt.NDArray[np.int64]
    bars: Bars


def _where(location: Location) -> Path | Storage:
    """Return a local path to scan with polars, or the Storage of a remote location."""
    if isinstance(location, Storage):
        return location.local_path() if location.is_local else location
    if is_uri(location):
        try:
            storage = Storage(str(location))
        except (StorageError, ValueError) as exc:
            raise InvalidInput(f"bar data location {location}: {exc}") from exc
        return storage.local_path() if storage.is_local else storage
    return Path(location)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NotFound(f"no bar data at {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".csv")
                   and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    if not files:
        raise NotFound(f"no Parquet or CSV files under {path}")
    return files


def _symbol_of(file: Path, root: Path) -> str | None:
    match = _SYMBOL_DIR.search(file.relative_to(root).as_posix() if root.is_dir() else "")
    return match.group(1) if match else None


def data_version(path: Location) -> str:
    """Return a sha256 over the input files' relative paths, sizes and modification times.

    Remote files count their modification time where the filesystem gives one.
    """
    root = _where(path)
    digest = hashlib.sha256()
    if isinstance(root, Storage):
        for name, info in _remote_files(root):
            modified = "" if info.mtime_ns is None else str(info.mtime_ns)
            digest.update(f"{name or info.base_name}\0{info.size}\0{modified}\n".encode())
        return digest.hexdigest()
    for file in _files(root):
        stat = file.stat()
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def list_symbols(path: Location) -> list[str]:
    """Return the symbols in the data, sorted (from the paths alone when partitioned)."""
    root = _where(path)
    if isinstance(root, Storage):
        listed = _remote_files(root)
        named = {_SYMBOL_DIR.search(name) for name, _ in listed}
        if None not in named:
            return sorted({m.group(1) for m in named if m is not None})
        frame = _remote_scan(root, listed).select(pl.col("symbol").unique()).collect()
        return sorted(frame["symbol"].to_list())
    files = _files(root)
    from_paths = {_symbol_of(f, root) for f in files}
    if None not in from_paths:
        return sorted(s for s in from_paths if s is not None)
    frame = _scan(files, root).select(pl.col("symbol").unique()).collect()
    return sorted(frame["symbol"].to_list())


def _read_one(file: Path, symbol: str | None, start_ns: int | None = None,
              end_ns: int | None = None) -> pl.LazyFrame:
    lazy = (pl.scan_csv(file, try_parse_dates=True) if file.suffix == ".csv"
            else pl.scan_parquet(file, hive_partitioning=False))
    return _normalise(lazy, str(file), symbol, start_ns, end_ns)


def _normalise(lazy: pl.LazyFrame, file: str, symbol: str | None, start_ns: int | None,
               end_ns: int | None) -> pl.LazyFrame:
    """Return ``lazy`` as contract columns with ``timestamp_ns``, rows in ``[start_ns, end_ns)``."""
    names = lazy.collect_schema().names()
    if "ts_ns" in names:
        time_column = pl.col("ts_ns")
        as_time: pl.DataType = pl.Int64()
        lazy = lazy.with_columns(pl.col("ts_ns").cast(pl.Int64).alias("timestamp_ns"))
    elif "timestamp" in names:
        time_column = pl.col("timestamp")
        as_time = pl.Datetime("ns", "UTC")
        lazy = lazy.with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC"))
                                 .dt.epoch("ns").alias("timestamp_ns"))
    else:
        raise InvalidInput(f"{file}: bars need a timestamp or ts_ns column")
    # on the stored column, so Parquet statistics skip row groups outside the range
    if start_ns is not None:
        lazy = lazy.filter(time_column >= pl.lit(start_ns, pl.Int64).cast(as_time))
    if end_ns is not None:
        lazy = lazy.filter(time_column < pl.lit(end_ns, pl.Int64).cast(as_time))
    missing = [c for c in PRICE_COLUMNS if c not in names]
    if missing:
        raise InvalidInput(f"{file}: missing columns {missing}")
    if symbol is not None:
        lazy = lazy.with_columns(pl.lit(symbol).alias("symbol"))
    elif "symbol" not in names:
        raise InvalidInput(f"{file}: bars need a symbol column or a symbol=<S> directory")
    return lazy.select("symbol", "timestamp_ns",
                       *(pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS))


def _scan(files: Sequence[Path], root: Path, start_ns: int | None = None,
          end_ns: int | None = None) -> pl.LazyFrame:
    frames = [_read_one(f, _symbol_of(f, root), start_ns, end_ns) for f in files]
    return pl.concat(frames, how="vertical")


def _research_layout(files: Sequence[Path], root: Path) -> bool:
    """Whether every file is a ``symbol=<S>/year=<Y>/bars.parquet`` of ``market.research.lake``."""
    if not root.is_dir():
        return False
    for file in files:
        parts = file.relative_to(root).parts
        if not (len(parts) == 3 and parts[0].startswith("symbol=")
                and parts[1].startswith("year=") and parts[2] == "bars.parquet"):
            return False
    return True


def load_bars(path: Location, symbols: Sequence[str], *, start_ns: int | None = None,
              end_ns: int | None = None) -> list[SymbolBars]:
    """Return the given symbols' bars in ``[start_ns, end_ns)``, in ``symbols`` order.

    Symbols without bars there are left out.
    """
    root = _where(path)
    if isinstance(root, Storage):
        return _split(_remote_load(root, symbols, start_ns, end_ns), symbols)
    wanted = set(symbols)
    if root.is_dir() and any((root / f"symbol={s}").is_dir() for s in wanted):
        # symbol-first layout: list only the wanted symbols' folders, not the whole lake
        files = sorted(f for s in wanted if (root / f"symbol={s}").is_dir()
                       for f in (root / f"symbol={s}").rglob("*.parquet")
                       if not f.name.startswith((".", "_")))
    else:
        files = _files(root)
    by_path = {f: _symbol_of(f, root) for f in files}
    if None not in by_path.values():
        files = [f for f in files if by_path[f] in wanted]
        if not files:
            return []
    if _research_layout(files, root):
        # one file per symbol and year, each sorted and unique: one scan, in path order
        bounds = [pl.lit(ns, pl.Int64).cast(pl.Datetime("ns", "UTC")) for ns in (start_ns,
                                                                                  end_ns)]
        lazy = pl.scan_parquet(files, hive_partitioning=False)
        if start_ns is not None:
            lazy = lazy.filter(pl.col("timestamp") >= bounds[0])
        if end_ns is not None:
            lazy = lazy.filter(pl.col("timestamp") < bounds[1])
        frame = lazy.select(
            "symbol", pl.col("timestamp").dt.epoch("ns").alias("timestamp_ns"),
            *(pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS)).collect()
    else:
        lazy = (_scan(files, root, start_ns, end_ns).with_row_index("_row")
                .filter(pl.col("symbol").is_in(wanted)))
        frame = (lazy.sort("symbol", "timestamp_ns", "_row")
                 .unique(["symbol", "timestamp_ns"], keep="last", maintain_order=True)
                 .drop("_row").collect())
    return _split(frame, symbols)


def _split(frame: pl.DataFrame, symbols: Sequence[str]) -> list[SymbolBars]:
    """Return ``frame``'s bars per symbol, in ``symbols`` order, leaving out those without."""
    if not frame.height:
        return []
    # Both reads leave each symbol's rows in one run, so a symbol's arrays are slices of
    # the frame's columns (no copy per symbol, as partition_by would make).
    runs = frame.select(pl.col("symbol").rle()).unnest("symbol")
    if runs["value"].n_unique() != runs.height:  # not so far; kept correct if that changes
        frame = frame.sort("symbol", maintain_order=True)
        runs = frame.select(pl.col("symbol").rle()).unnest("symbol")
    stops = np.cumsum(runs["len"].to_numpy().astype(np.int64))
    where = {name: (int(stop - length), int(stop)) for name, stop, length in
             zip(runs["value"].to_list(), stops, runs["len"].to_list(), strict=True)}
    times = frame["timestamp_ns"].to_numpy().astype(np.int64)
    prices = [np.ascontiguousarray(frame[c].to_numpy(), dtype=np.float64) for c in PRICE_COLUMNS]
    out = []
    for symbol in symbols:
        if symbol not in where or where[symbol][0] == where[symbol][1]:
            continue
        start, stop = where[symbol]
        out.append(SymbolBars(symbol, times[start:stop],
                              Bars(*(column[start:stop] for column in prices))))
    return out


def _remote_files(storage: Storage) -> list[tuple[str, pafs.FileInfo]]:
    """Return the Parquet and CSV files under ``storage`` (or it, when a file) with their info.

    Names are relative to the root (a lone file: ``""``); hidden ones are skipped.
    """
    top = storage.fs.get_file_info(storage.root)
    if top.type == pafs.FileType.File:
        return [("", top)]
    if top.type == pafs.FileType.NotFound:
        raise NotFound(f"no bar data at {storage.location}")
    found = _listed(storage, storage.root)
    if not found:
        raise NotFound(f"no Parquet or CSV files under {storage.location}")
    return found


def _listed(storage: Storage, folder: str) -> list[tuple[str, pafs.FileInfo]]:
    base = storage.root.rstrip("/")
    selector = pafs.FileSelector(folder, allow_not_found=True, recursive=True)
    found = []
    for info in storage.fs.get_file_info(selector):
        name = info.path[len(base) + 1:]
        if (info.type == pafs.FileType.File and name.endswith((".parquet", ".csv"))
                and not any(part.startswith((".", "_")) for part in name.split("/"))):
            found.append((name, info))
    return sorted(found, key=lambda item: item[0])


def _remote_read(storage: Storage, info: pafs.FileInfo, start_ns: int | None,
                 end_ns: int | None) -> pl.LazyFrame:
    """Return one remote file as a lazy frame, reading only the row groups in range."""
    if info.path.endswith(".csv"):
        with storage.fs.open_input_stream(info.path) as stream:
            return pl.read_csv(io.BytesIO(stream.read()), try_parse_dates=True).lazy()
    dataset = pads.dataset(info.path, filesystem=storage.fs, format="parquet")
    bound = _arrow_range(dataset.schema, start_ns, end_ns)
    table = dataset.to_table(filter=bound) if bound is not None else dataset.to_table()
    return pl.DataFrame(pl.from_arrow(table)).lazy()


def _arrow_range(schema: pa.Schema, start_ns: int | None, end_ns: int | None) -> Any:
    """Return a pyarrow filter of the time range on the stored column, None when there is none.

    Only a pruning hint: :func:`_normalise` filters the rows again in polars.
    """
    names = schema.names
    column = "ts_ns" if "ts_ns" in names else "timestamp" if "timestamp" in names else None
    if column is None or (start_ns is None and end_ns is None):
        return None
    kind = schema.field(column).type
    bound: Any = None
    for ns, keep in ((start_ns, "ge"), (end_ns, "lt")):
        if ns is None:
            continue
        try:
            value = (pa.scalar(ns, pa.timestamp("ns", kind.tz)) if pa.types.is_timestamp(kind)
                     else pa.scalar(ns, pa.int64())).cast(kind, safe=False)
        except (pa.ArrowException, ValueError, TypeError):
            return None  # a type pyarrow cannot compare: read everything, polars filters
        test = pads.field(column) >= value if keep == "ge" else pads.field(column) < value
        bound = test if bound is None else bound & test
    return bound


def _remote_scan(storage: Storage, listed: Sequence[tuple[str, pafs.FileInfo]],
                 start_ns: int | None = None, end_ns: int | None = None) -> pl.LazyFrame:
    frames = []
    for name, info in listed:
        match = _SYMBOL_DIR.search(name)
        frames.append(_normalise(_remote_read(storage, info, start_ns, end_ns),
                                 storage.uri(name), match.group(1) if match else None,
                                 start_ns, end_ns))
    return pl.concat(frames, how="vertical")


def _remote_load(storage: Storage, symbols: Sequence[str], start_ns: int | None,
                 end_ns: int | None) -> pl.DataFrame:
    """Return the wanted symbols' bars from a remote location, as the local reader orders them."""
    wanted = set(symbols)
    # symbol-first layout: one listing per wanted symbol, not one of the whole lake
    listed = [item for symbol in sorted(wanted)
              for item in _listed(storage, storage.path(f"symbol={symbol}"))]
    if not listed:
        listed = _remote_files(storage)
    named = {name: _SYMBOL_DIR.search(name) for name, _ in listed}
    if None not in named.values():
        listed = [(name, info) for name, info in listed
                  if (match := named[name]) is not None and match.group(1) in wanted]
        if not listed:
            return pl.DataFrame()
    listed = sorted(listed, key=lambda item: item[0])
    if all(_RESEARCH_FILE.match(name) for name, _ in listed):
        # one sorted, unique file per symbol and year, as on disk: no merge to do
        return _remote_scan(storage, listed, start_ns, end_ns).collect()
    return (_remote_scan(storage, listed, start_ns, end_ns)
            .with_row_index("_row").filter(pl.col("symbol").is_in(wanted))
            .sort("symbol", "timestamp_ns", "_row")
            .unique(["symbol", "timestamp_ns"], keep="last", maintain_order=True)
            .drop("_row").collect())


def periods_per_year(timestamp_ns: npt.NDArray[np.int64]) -> float:
    """Return bars per year: 252 for daily bars, else 252 times the median bars per UTC day."""
    if timestamp_ns.shape[0] < 2:
        return float(TRADING_DAYS_PER_YEAR)
    spacing = _median(np.diff(timestamp_ns))
    if spacing >= NS_PER_DAY * 0.5:
        return float(TRADING_DAYS_PER_YEAR)
    days = timestamp_ns // NS_PER_DAY
    if np.all(days[1:] >= days[:-1]):  # sorted: a day's bars are one run
        starts = np.flatnonzero(np.concatenate(([True], days[1:] != days[:-1])))
        per_day = np.diff(np.append(starts, days.shape[0]))
    else:
        _, per_day = np.unique(days, return_counts=True)
    return float(TRADING_DAYS_PER_YEAR * _median(per_day))


def _median(values: npt.NDArray[np.int64]) -> float:
    """Return ``np.median(values)``, by a sort: numpy's partition crawls on the many equal
    values of bar spacings (about 30x slower here)."""
    ordered = np.sort(values)
    middle = ordered.shape[0] // 2
    picked = ordered[middle - 1:middle + 1] if ordered.shape[0] % 2 == 0 else \
        ordered[middle:middle + 1]
    return float(np.mean(picked))
