"""Benchmark lake reads: a year of one symbol and a day of the universe.

    .venv/bin/python -m bench.bench_lake [--lake DIR]

Against, in the same run: a plain polars scan of the same lake
(``pl.scan_parquet(LAKE/**/*.parquet, hive_partitioning=True)`` with the same filter),
and for the year of one symbol, the live ``HistoryStore`` layout (``date=/symbol=``: 252
files for the year) holding the same bars. Best wall time of 3 (one polars thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too
from bench.common import emit  # noqa: E402
from market.history import HistoryStore  # noqa: E402
from market.research.data import list_symbols, load_bars  # noqa: E402


def _best(function: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", type=Path,
                        default=Path(tempfile.gettempdir()) / "marketray-bench-lake")
    args = parser.parse_args()
    if not args.lake.exists():
        from pipelines.backfill import run as backfill

        backfill(args.lake, universe=500, use_ray=False)
    symbols = list_symbols(args.lake)
    symbol = symbols[len(symbols) // 2]
    plain = pl.scan_parquet(str(args.lake / "**" / "*.parquet"), hive_partitioning=True)

    year_s, year = _best(lambda: load_bars(args.lake, [symbol])[0])
    plain_year_s, plain_year = _best(
        lambda: plain.filter(pl.col("symbol") == symbol).sort("timestamp").collect())
    assert plain_year.height == len(year.bars)

    stamps = year.timestamp_ns
    day_start = int(stamps[len(stamps) // 2 // 390 * 390])  # a session open
    day_end = day_start + 86_400 * 10**9
    day_s, day = _best(lambda: load_bars(args.lake, symbols, start_ns=day_start,
                                         end_ns=day_end))
    lo = pl.lit(day_start, pl.Int64).cast(pl.Datetime("ns", "UTC"))
    hi = pl.lit(day_end, pl.Int64).cast(pl.Datetime("ns", "UTC"))
    plain_day_s, plain_day = _best(lambda: plain.filter(
        (pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi)).collect())
    assert plain_day.height == sum(len(d.bars) for d in day)

    with tempfile.TemporaryDirectory() as live:
        store = HistoryStore(live, flush_rows=10**9)
        frame = pl.DataFrame({"symbol": [symbol] * len(stamps), "ts_ns": stamps,
                              "open": year.bars.open, "high": year.bars.high,
                              "low": year.bars.low, "close": year.bars.close,
                              "volume": year.bars.volume})
        store._pending.append(frame)  # bulk-load through the store's own flush
        store._pending_rows = frame.height
        store.flush()
        files = len(list(Path(live).rglob("*.parquet")))
        live_s, live_year = _best(lambda: store.scan(symbol).collect())
        assert live_year.height == len(stamps)
        assert np.array_equal(live_year["close"].to_numpy(), year.bars.close)

    emit({"benchmark": "lake reads", "symbols": len(symbols),
          "year_of_one_symbol": {"bars": len(year.bars), "lake_s": year_s,
                                 "plain_polars_scan_s": plain_year_s,
                                 "ratio_plain_over_lake": plain_year_s / year_s,
                                 "history_store_layout_s": live_s,
                                 "history_store_files": files,
                                 "ratio_history_store_over_lake": live_s / year_s},
          "day_of_universe": {"bars": plain_day.height, "lake_s": day_s,
                              "plain_polars_scan_s": plain_day_s,
                              "ratio_plain_over_lake": plain_day_s / day_s}})


if __name__ == "__main__":
    main()
