"""History store write/read rates (rows/s) against plain polars on the same data.

Data: ``BENCH_SYMBOLS`` symbols × ``BENCH_DAYS`` sessions of 390 one-minute bars.

* write — :class:`market.history.HistoryStore` fed as live (one ``append_bars``
  per minute with every symbol's bar, buffered, flushed into date/symbol
  partitions); baseline: one ``DataFrame.write_parquet`` of the whole frame,
  and polars' own hive writer (``write_parquet(partition_by=...)``).
* read — ``read_bars`` of every symbol's full history; baseline: ``scan_parquet``
  of the single file filtered by symbol (the same rows), per symbol.

Prints one JSON object: figure, baseline, ratio per operation.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

N_SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "200"))
DAYS = int(os.environ.get("BENCH_DAYS", "5"))
NS_MIN = 60_000_000_000


def dataset(n_symbols: int = N_SYMBOLS, days: int = DAYS
            ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return symbols, session minutes (ns) and a random-walk close per minute × symbol."""
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    day0 = 20_400 * 86_400 * 1_000_000_000
    minutes = np.concatenate([day0 + d * 86_400 * 1_000_000_000 + (870 + np.arange(390)) * NS_MIN
                              for d in range(days)])
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.standard_normal((len(minutes), n_symbols)), axis=0)
    return symbols, minutes, close


def main() -> None:
    from market.feeds.base import BarBatch
    from market.history import HistoryStore

    symbols, minutes, close = dataset()
    rows = close.size
    ids = np.arange(N_SYMBOLS)
    per_minute = [BarBatch.from_columns(symbol_id=ids, ts_ns=np.full(N_SYMBOLS, t), open=c,
                                        high=c + 0.1, low=c - 0.1, close=c,
                                        volume=np.full(N_SYMBOLS, 100.0))
                  for t, c in zip(minutes, close, strict=True)]
    whole = pl.DataFrame({
        "symbol": np.tile(np.asarray(symbols), len(minutes)),
        "ts_ns": np.repeat(minutes, N_SYMBOLS), "open": close.ravel(),
        "high": close.ravel() + 0.1, "low": close.ravel() - 0.1, "close": close.ravel(),
        "volume": np.full(rows, 100.0)})
    whole = whole.with_columns(pl.from_epoch("ts_ns", "ns").dt.date().alias("date"))
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        root = Path(tmp)
        store = HistoryStore(root / "store", flush_rows=200_000)
        t0 = time.perf_counter()
        for batch in per_minute:
            store.append_bars(symbols, batch)
        store.flush()
        write_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        whole.drop("date").write_parquet(root / "plain.parquet")
        plain_write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        whole.write_parquet(root / "hive", partition_by=["date", "symbol"])
        hive_write_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        got = sum(len(store.read_bars(s)) for s in symbols)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain = sum(pl.scan_parquet(root / "plain.parquet").filter(pl.col("symbol") == s)
                    .sort("ts_ns").collect().height for s in symbols)
        plain_read_s = time.perf_counter() - t0
        assert got == plain == rows

        t0 = time.perf_counter()
        merged = store.compact()
        compact_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compacted = sum(len(store.read_bars(s)) for s in symbols)
        compacted_read_s = time.perf_counter() - t0
        files = len(list((root / "store").rglob("*.parquet")))
    emit({
        "benchmark": "history", "rows": rows, "symbols": N_SYMBOLS, "days": DAYS,
        "write": {"figure": rows / write_s, "baseline_single_file": rows / plain_write_s,
                  "baseline_polars_hive": rows / hive_write_s,
                  "ratio": (rows / write_s) / (rows / plain_write_s)},
        "read_per_symbol": {"figure": rows / read_s, "baseline_scan_filter": rows / plain_read_s,
                            "ratio": (rows / read_s) / (rows / plain_read_s)},
        "compaction": {"files_merged": merged, "seconds": compact_s, "files_after": files,
                       "read_after_rows_per_s": compacted / compacted_read_s},
        "units": "rows/s",
    })


if __name__ == "__main__":
    main()
