"""Benchmark batch indicators against TA-Lib and the incremental bank against plain Python.

Prints one JSON object:

* ``batch``: for each indicator, points per second of ``market.indicators`` and of
  TA-Lib on the same 1,000,000 bars, and the time ratio (ours / TA-Lib; the target
  is <= 2).
* ``incremental``: ``IndicatorBank.update`` on batches that commit one bar for each
  of 10,000 symbols (all 15 indicators per update), in updates per second, against
  a plain-Python per-symbol loop running the same algorithm (the un-jitted step
  function) on the same bars.

Timings are the best thread CPU time of several repeats (shared machines); wall
figures are reported for the headline numbers.

    NUMBA_NUM_THREADS=1 .venv/bin/python -m bench.bench_indicators [--n 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting
import talib  # noqa: E402

from bench.common import best_of, emit  # noqa: E402
from market import incremental  # noqa: E402
from market import indicators as ind  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--bars", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    n = args.n
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    h = c * (1 + rng.uniform(0, 0.002, n))
    lo = c * (1 - rng.uniform(0, 0.002, n))
    v = rng.uniform(1e3, 1e5, n)
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "sma": (lambda: ind.sma(c), lambda: talib.SMA(c)),
        "ema": (lambda: ind.ema(c), lambda: talib.EMA(c)),
        "rsi": (lambda: ind.rsi(c), lambda: talib.RSI(c)),
        "macd": (lambda: ind.macd(c), lambda: talib.MACD(c)),
        "bbands": (lambda: ind.bbands(c), lambda: talib.BBANDS(c)),
        "atr": (lambda: ind.atr(h, lo, c), lambda: talib.ATR(h, lo, c)),
        "stoch": (lambda: ind.stoch(h, lo, c), lambda: talib.STOCH(h, lo, c)),
        "obv": (lambda: ind.obv(c, v), lambda: talib.OBV(c, v)),
        "adx": (lambda: ind.adx(h, lo, c), lambda: talib.ADX(h, lo, c)),
    }
    batch = {}
    for name, (ours, theirs) in cases.items():
        ours_cpu, _ = best_of(ours, args.repeats)
        theirs_cpu, _ = best_of(theirs, args.repeats)
        batch[name] = {"points_per_second": n / ours_cpu, "talib_points_per_second":
                       n / theirs_cpu, "time_ratio_vs_talib": ours_cpu / theirs_cpu}

    m, bars = args.symbols, args.bars
    slots = np.arange(m, dtype=np.int32)
    bh = 100 + rng.normal(0, 1, (bars, m))
    bl = bh - rng.uniform(0, 1, (bars, m))
    bc = (bh + bl) / 2
    bv = rng.uniform(1, 1000, (bars, m))

    def run_bank() -> None:
        bank = incremental.IndicatorBank(m)
        for k in range(bars):
            bank.update(slots, bh[k], bl[k], bc[k], bv[k])
    bank_cpu, bank_wall = best_of(run_bank, 3)

    step = incremental._step.py_func  # the same algorithm, plain Python
    py_symbols = min(m, 200)

    def run_python() -> None:
        state = np.zeros((py_symbols, incremental._N_STATE))
        ring = np.zeros((py_symbols, 5, incremental._RING))
        last = np.full((py_symbols, len(incremental.INDICATOR_NAMES)), np.nan)
        for k in range(bars):
            for s in range(py_symbols):
                step(state[s], ring[s], k, bh[k, s], bl[k, s], bc[k, s], bv[k, s], last[s])
    py_cpu, _ = best_of(run_python, 1)
    bank_rate = m * bars / bank_cpu
    python_rate = py_symbols * bars / py_cpu
    emit({
        "benchmark": "indicators", "n": n,
        "timing": "best thread CPU time of several repeats (shared machine)",
        "batch": batch,
        "batch_worst_time_ratio_vs_talib": max(b["time_ratio_vs_talib"] for b in batch.values()),
        "incremental": {
            "updates_per_second": bank_rate,
            "updates_per_second_wall": m * bars / bank_wall,
            "indicators_per_update": len(incremental.INDICATOR_NAMES),
            "symbols": m, "bars_per_symbol": bars,
            "baseline_plain_python_per_symbol_loop": python_rate,
            "ratio_vs_plain_python": bank_rate / python_rate,
        },
        "targets": {"batch_time_ratio_vs_talib": 2.0, "updates_per_second": 2_000_000},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    })


if __name__ == "__main__":
    main()
