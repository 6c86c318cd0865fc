"""A vendor's minute bars replacing the bars built from trades, per shard.

Alpaca streams every subscribed symbol's bar for minute m just after m ends; once the
ticks have closed m, the shard replaces its trade-built bar with the vendor's. Setup:
``BENCH_SYMBOLS`` symbols (default 500 and 5,000) with 2,000 warm-up bars each (the
default ``bar_history``), one trade per symbol in m and one in m+1, then one vendor bar
per symbol for m. Figure: seconds for the shard to take the vendor bars (in place,
:meth:`market.incremental.IndicatorBank.replace_last`). Baseline in the same run: the
same bars through the full per-symbol rebuild (what every replacement cost before).
Prints one JSON object.

    python bench/bench_vendor_bars.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

SIZES = tuple(int(x) for x in os.environ.get("BENCH_SYMBOLS", "500,5000").split(","))
WARM_BARS = 2_000


def _trades(n: int, ts_ns: int, price: float) -> Any:
    from market.feeds.base import TRADE, TickBatch

    nan = np.full(n, np.nan)
    return TickBatch.from_columns(kind=np.full(n, TRADE), symbol_id=np.arange(n),
                                  ts_ns=np.full(n, ts_ns), price=np.full(n, price),
                                  size=np.full(n, 10.0), bid=nan, ask=nan, bid_size=nan,
                                  ask_size=nan)


def run(n: int, *, in_place: bool) -> float:
    """Seconds for one shard of ``n`` symbols to take one vendor bar per symbol."""
    from market.feeds.base import NS_PER_MINUTE, BarBatch
    from market.shard import Shard, ShardConfig

    symbols = [f"S{i:05d}" for i in range(n)]
    shard = Shard(symbols, symbols, ShardConfig(bar_capacity=WARM_BARS))
    if not in_place:  # every replacement takes the rebuild path
        shard.market._replace_newest = lambda rows, *rest: np.zeros(0, np.int32)  # type: ignore[method-assign]
    minute = 1_764_000_000 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE
    rng = np.random.default_rng(5)
    close = 100 + np.cumsum(rng.normal(0, 0.1, (n, WARM_BARS)), axis=1).ravel()
    ts = np.tile(minute - np.arange(WARM_BARS, 0, -1) * NS_PER_MINUTE, n)
    warm = BarBatch.from_columns(symbol_id=np.repeat(np.arange(n), WARM_BARS), ts_ns=ts,
                                 open=close, high=close + 0.5, low=close - 0.5, close=close,
                                 volume=np.full(n * WARM_BARS, 1_000.0))
    shard.ingest(bars=warm, warmup=True)
    shard.ingest(_trades(n, minute + 1_000_000_000, 100.0))
    shard.ingest(_trades(n, minute + NS_PER_MINUTE + 1_000_000_000, 100.2))
    vendor = BarBatch.from_columns(symbol_id=np.arange(n), ts_ns=np.full(n, minute),
                                   open=np.full(n, 100.0), high=np.full(n, 100.6),
                                   low=np.full(n, 99.7), close=np.full(n, 100.1),
                                   volume=np.full(n, 25_000.0))
    started = time.perf_counter()
    shard.ingest(bars=vendor)
    seconds = time.perf_counter() - started
    assert shard.stats()["bars_loaded"] >= n, "the vendor bars were not taken"
    return seconds


def main() -> None:
    run(10, in_place=True)  # compile the numba kernels outside the clock
    results = []
    for n in SIZES:
        figure = min(run(n, in_place=True) for _ in range(3))
        baseline = run(n, in_place=False)
        results.append({"symbols": n, "figure_s": round(figure, 4),
                        "baseline_s": round(baseline, 4),
                        "speedup": round(baseline / figure, 1)})
    emit({"benchmark": "vendor_bars_replace", "unit": "s per minute's vendor bars, one shard",
          "warm_bars": WARM_BARS, "baseline_name": "full per-symbol rebuild (same run)",
          "results": results, "load_average": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
