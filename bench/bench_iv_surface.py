"""Benchmark the iv_surface computation against the implied-vol kernel alone, one core.

    .venv/bin/python -m bench.bench_iv_surface [--minutes 390] [--strikes 41]

Builds a recording's tables in memory: ``--underlyings`` underlyings, 4 expiries,
``--strikes`` strikes × call and put each, two quotes per contract and minute (priced
by ``market.greeks`` on a skewed smile), two stock quotes a minute. Times
``contract_minutes`` (last quotes, joins, implied vol, Greeks) plus ``expiry_summary``
(ATM and 25-delta skew) and, in the same run on the same contract-minute arrays,
``implied_volatility_arrays`` alone and with ``bsm_greeks_arrays``. Figures are implied
vols per second of process CPU time (best of ``--repeats``; polars works in its own
thread, which a thread clock would miss) and the ratios to the kernel.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread settings
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too
from bench.common import emit  # noqa: E402
from market.feeds.base import QUOTE  # noqa: E402
from market.greeks import (  # noqa: E402
    bsm_greeks_arrays,
    implied_volatility_arrays,
    time_to_expiry,
)
from market.research.iv_surface import contract_minutes, expiry_summary  # noqa: E402

RATE = 0.04
EXPIRIES = (date(2026, 12, 18), date(2027, 1, 15), date(2027, 3, 19), date(2027, 6, 18))
START_NS = 1_795_530_600 * 10**9  # a weekday 14:30 UTC


def tables(underlyings: int, minutes: int, strikes: int, seed: int
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Option ticks, chains and stock ticks of a synthetic recording."""
    rng = np.random.default_rng(seed)
    option_parts, chain_parts, stock_parts = [], [], []
    minute_ns = START_NS + np.arange(minutes, dtype=np.int64) * 60 * 10**9
    for u in range(underlyings):
        symbol = f"U{u:03d}"
        level = 50.0 + 10.0 * u
        spot = level * np.exp(np.cumsum(rng.normal(0, 0.0005, minutes)))
        grid = level * np.linspace(0.8, 1.2, strikes)
        contracts, is_call, strike, expiry = [], [], [], []
        for e in EXPIRIES:
            for k in grid:
                for call in (True, False):
                    contracts.append(f"{symbol}{e:%y%m%d}{'C' if call else 'P'}{k:09.3f}")
                    is_call.append(call)
                    strike.append(k)
                    expiry.append(e)
        n = len(contracts)
        chain_parts.append(pl.DataFrame({"contract": contracts, "expiration": expiry,
                                         "strike": strike, "is_call": is_call}))
        # every contract at every minute: rows minute-major
        m = np.repeat(np.arange(minutes), n)
        c = np.tile(np.arange(n), minutes)
        k = np.asarray(strike)[c]
        years = time_to_expiry(np.asarray(expiry, "datetime64[D]")[c],
                               minute_ns[m] + 60 * 10**9)  # type: ignore[arg-type]
        sigma = 0.25 - 0.3 * (k / spot[m] - 1.0)
        price = bsm_greeks_arrays(np.asarray(is_call)[c], spot[m], k, years, [RATE], [0.0],
                                  sigma)[0]
        half = np.maximum(0.005, 0.002 * price)
        for tick in (10, 40):  # the second quote of the minute is the one used
            option_parts.append(pl.DataFrame({
                "symbol": symbol, "contract": pl.Series(contracts).gather(c),
                "kind": QUOTE, "ts_ns": minute_ns[m] + tick * 10**9,
                "bid": price - half, "ask": price + half}))
        for tick in (5, 35):
            stock_parts.append(pl.DataFrame({
                "symbol": symbol, "kind": QUOTE, "ts_ns": minute_ns + tick * 10**9,
                "bid": spot - 0.01, "ask": spot + 0.01}))
    return pl.concat(option_parts), pl.concat(chain_parts), pl.concat(stock_parts)


def best_of(func: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best process CPU seconds, best wall seconds) of ``repeats`` calls after a warm-up."""
    func()
    cpu_best = wall_best = float("inf")
    for _ in range(repeats):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started, cpu = time.perf_counter(), usage.ru_utime + usage.ru_stime
        func()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_best = min(cpu_best, usage.ru_utime + usage.ru_stime - cpu)
        wall_best = min(wall_best, time.perf_counter() - started)
    return max(cpu_best, 1e-9), wall_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--underlyings", type=int, default=2)
    parser.add_argument("--minutes", type=int, default=390)
    parser.add_argument("--strikes", type=int, default=41)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    options, chains, stock = tables(args.underlyings, args.minutes, args.strikes, seed=7)
    holder: dict[str, pl.DataFrame] = {}

    def surface() -> None:
        holder["rows"] = contract_minutes(options, chains, stock, rate=RATE, dividend=0.0)
        holder["summary"] = expiry_summary(holder["rows"])

    surface_cpu, surface_wall = best_of(surface, args.repeats)
    rows, summary = holder["rows"], holder["summary"]
    is_call = rows["is_call"].to_numpy()
    inputs = [rows[c].to_numpy() for c in ("mid", "spot", "strike", "time_to_expiry")]
    rate, dividend = np.asarray([RATE]), np.asarray([0.0])
    vol = np.empty(rows.height)
    greeks = np.empty((6, rows.height))

    def kernel() -> None:
        implied_volatility_arrays(is_call, *inputs, rate, dividend, out=vol)

    def kernel_and_greeks() -> None:
        kernel()
        bsm_greeks_arrays(is_call, inputs[1], inputs[2], inputs[3], rate, dividend, vol,
                          out=greeks)

    kernel_cpu, _ = best_of(kernel, args.repeats)
    both_cpu, _ = best_of(kernel_and_greeks, args.repeats)
    n = rows.height
    same = bool(np.array_equal(vol, rows["implied_volatility"].to_numpy(), equal_nan=True))
    emit({"benchmark": "iv_surface, one core", "contract_minutes": n,
          "option_ticks": options.height, "expiry_rows": summary.height,
          "implied_vols_nan": int(np.isnan(vol).sum()),
          "surface_implied_vols_per_s": n / surface_cpu,
          "surface_wall_s": surface_wall, "surface_cpu_s": surface_cpu,
          "kernel_implied_vols_per_s": n / kernel_cpu,
          "kernel_with_greeks_per_s": n / both_cpu,
          "ratio_surface_over_kernel": kernel_cpu / surface_cpu,
          "ratio_surface_over_kernel_with_greeks": both_cpu / surface_cpu,
          "target_implied_vols_per_s": 3_000_000, "kernel_equals_surface": same})


if __name__ == "__main__":
    main()
