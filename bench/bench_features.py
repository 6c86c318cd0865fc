"""Benchmark the features bundle against TA-Lib called per symbol, one process, one core.

    .venv/bin/python -m bench.bench_features [--lake DIR] [--symbols 20]

Both compute the same 15 indicators and the 10 candlestick patterns (TA-Lib's ``CDL*``
functions in the baseline; ``market.research.features`` also VWAP sessions, ``breakout``,
``ma_cross`` and the output frame) over the first ``--symbols`` symbols of the lake, already
in memory; the figure is bars per second (best CPU time of 3), and the time ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import talib  # noqa: E402 - after the thread settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too
from bench.common import emit  # noqa: E402
from market.research.data import list_symbols, load_bars  # noqa: E402
from market.research.features import features  # noqa: E402

CANDLES = ("CDLDOJI", "CDLENGULFING", "CDLHAMMER", "CDLSHOOTINGSTAR", "CDLMORNINGSTAR",
           "CDLEVENINGSTAR", "CDLHANGINGMAN", "CDLINVERTEDHAMMER", "CDLHARAMI", "CDLMARUBOZU")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _talib(item: object) -> None:
    b = item.bars  # type: ignore[attr-defined]
    talib.SMA(b.close, 20)
    talib.EMA(b.close, 20)
    talib.RSI(b.close, 14)
    talib.MACD(b.close, 12, 26, 9)
    talib.BBANDS(b.close, 20, 2, 2)
    talib.ATR(b.high, b.low, b.close, 14)
    talib.STOCH(b.high, b.low, b.close, 5, 3, 0, 3, 0)
    talib.OBV(b.close, b.volume)
    talib.ADX(b.high, b.low, b.close, 14)
    for name in CANDLES:
        getattr(talib, name)(b.open, b.high, b.low, b.close)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", type=Path,
                        default=Path(tempfile.gettempdir()) / "marketray-bench-lake")
    parser.add_argument("--symbols", type=int, default=20)
    args = parser.parse_args()
    if not args.lake.exists():
        from pipelines.backfill import run as backfill

        backfill(args.lake, universe=max(args.symbols, 5), use_ray=False)
    loaded = load_bars(args.lake, list_symbols(args.lake)[:args.symbols])
    bars = sum(len(item.bars) for item in loaded)
    features(loaded[0])  # compile
    best = {"features": float("inf"), "talib": float("inf")}
    for _ in range(3):
        for name, function in (("features", features), ("talib", _talib)):
            start = _cpu_s()
            for item in loaded:
                function(item)
            best[name] = min(best[name], _cpu_s() - start)
    emit({"benchmark": "features bundle, one core", "symbols": len(loaded), "bars": bars,
          "features_bars_per_s": bars / best["features"],
          "talib_bars_per_s": bars / best["talib"],
          "time_ratio_features_over_talib": best["features"] / best["talib"]})


if __name__ == "__main__":
    main()
