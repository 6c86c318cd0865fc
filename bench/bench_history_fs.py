"""Cost of the storage layer on history writes and reads on a local disk, same run.

Three arms write the same bars (``BENCH_SYMBOLS`` symbols × ``BENCH_DAYS`` sessions of 390
one-minute bars, fed as live: one ``append_bars`` per minute) and read every symbol's
full history back:

* ``direct`` — the store as it was before ``core.storage``: partitions globbed with
  ``pathlib``, files written by polars to a temporary name and ``os.replace``-d (a
  subclass here, so buffering, partitioning and reading are identical);
* ``path`` — :class:`market.history.HistoryStore` on a plain path (pyarrow.fs listing,
  whole-file writes through ``Storage``);
* ``file_uri`` — the same on a ``file://`` URI.

Rounds alternate the arms; the median per arm is reported. Prints one JSON object: rows/s
per arm and operation and the ratios ``path/direct`` and ``file_uri/direct``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_history import dataset  # noqa: E402
from bench.common import emit  # noqa: E402
from market.feeds.base import BarBatch  # noqa: E402
from market.history import COLUMNS, ROW_GROUP_ROWS, HistoryStore  # noqa: E402

N_SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "100"))
DAYS = int(os.environ.get("BENCH_DAYS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


class DirectHistory(HistoryStore):
    """The former local-only file handling: pathlib listing, os.replace, scan_parquet."""

    def _files(self, symbol: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        root = self.storage.local_path()
        return [str(p) for day in sorted(root.glob("date=*"))
                for p in sorted((day / f"symbol={symbol}").glob("part-*.parquet"))]

    def _scan_files(self, files: list[str]) -> pl.LazyFrame:
        return pl.scan_parquet(files).select(COLUMNS)

    def _write(self, frame: pl.DataFrame, relative: str) -> None:
        path = self.storage.local_path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                            statistics=True)
        os.replace(tmp, path)


def _batches() -> tuple[list[str], list[BarBatch], int]:
    symbols, minutes, close = dataset(N_SYMBOLS, DAYS)
    ids = np.arange(N_SYMBOLS)
    batches = [BarBatch.from_columns(symbol_id=ids, ts_ns=np.full(N_SYMBOLS, t), open=c,
                                     high=c + 0.1, low=c - 0.1, close=c,
                                     volume=np.full(N_SYMBOLS, 100.0))
               for t, c in zip(minutes, close, strict=True)]
    return symbols, batches, close.size


def _run(arm: str, root: Path, symbols: list[str], batches: list[BarBatch]) -> dict[str, Any]:
    location: str | Path = f"file://{root}" if arm == "file_uri" else root
    # Flush once a session's bars are in, so each symbol gets one file per day.
    kind = DirectHistory if arm == "direct" else HistoryStore
    store = kind(location, flush_rows=390 * N_SYMBOLS, flush_interval_s=1e9)
    started = time.perf_counter()
    for batch in batches:
        store.append_bars(symbols, batch)
    store.flush()
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    closes = [store.read_bars(s).close for s in symbols]
    read_s = time.perf_counter() - started
    return {"write_s": write_s, "read_s": read_s, "closes": closes}


def main() -> None:
    symbols, batches, rows = _batches()
    arms = ("direct", "path", "file_uri")
    times: dict[str, dict[str, list[float]]] = {a: {"write_s": [], "read_s": []} for a in arms}
    reference: list[np.ndarray] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-history-fs-") as tmp:
        for round_no in range(ROUNDS):
            for arm in arms[round_no % 3:] + arms[:round_no % 3]:
                result = _run(arm, Path(tmp) / f"{arm}-{round_no}", symbols, batches)
                if reference is None:
                    reference = result["closes"]
                # Every arm must return the same bars, or its speed means nothing.
                assert all(np.array_equal(a, b)
                           for a, b in zip(result["closes"], reference, strict=True)), arm
                for key in ("write_s", "read_s"):
                    times[arm][key].append(result[key])
    median = {a: {k: statistics.median(v) for k, v in t.items()} for a, t in times.items()}
    emit({
        "benchmark": "history_fs", "rows": rows, "symbols": N_SYMBOLS, "days": DAYS,
        "rounds": ROUNDS, "units": "rows/s (median of rounds)",
        **{arm: {"write": rows / m["write_s"], "read_all_symbols": rows / m["read_s"]}
           for arm, m in median.items()},
        "ratio_path_vs_direct": {"write": median["direct"]["write_s"] / median["path"]["write_s"],
                                 "read": median["direct"]["read_s"] / median["path"]["read_s"]},
        "ratio_file_uri_vs_direct": {
            "write": median["direct"]["write_s"] / median["file_uri"]["write_s"],
            "read": median["direct"]["read_s"] / median["file_uri"]["read_s"]},
    })


if __name__ == "__main__":
    main()
