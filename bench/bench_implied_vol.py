"""Benchmark implied volatility on one core against vollib (Jaeckel's "Let's be rational").

Prints one JSON object: ``implied_vols_per_second`` of ``implied_volatility_arrays``
on random options priced with ``bsm_greeks`` (wide ranges of moneyness, expiry and
volatility), the accuracy reached (largest |sigma - sigma_true| where the price
determines sigma well), vollib's rate on a subset of the same options, and the
ratio. Timings are the best thread CPU time of several repeats (shared machines);
wall-clock figures are reported too.

    NUMBA_NUM_THREADS=1 .venv/bin/python -m bench.bench_implied_vol [--n 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting

from bench.common import best_of, emit  # noqa: E402
from market.greeks import bsm_greeks_arrays, implied_volatility_arrays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vollib-n", type=int, default=5000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    n = args.n
    is_call = rng.random(n) < 0.5
    spot = rng.uniform(50.0, 150.0, n)
    strike = spot * np.exp(rng.uniform(-0.5, 0.5, n))
    t = rng.uniform(0.01, 3.0, n)
    r = rng.uniform(0.0, 0.08, n)
    q = rng.uniform(0.0, 0.04, n)
    sigma = rng.uniform(0.05, 1.0, n)
    g = bsm_greeks_arrays(is_call, spot, strike, t, r, q, sigma)
    price = g[0].copy()
    out = np.empty(n)

    cpu, wall = best_of(lambda: implied_volatility_arrays(is_call, price, spot, strike, t, r, q,
                                                          out=out), args.repeats)
    well = (price > 1e-200) & (1e-14 * price < 1e-11 * g[4] * 100.0)
    error = np.abs(out[well] - sigma[well])

    from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

    m = min(args.vollib_n, n)
    flags = np.where(is_call[:m], "c", "p")
    rows = [(float(price[i]), float(spot[i]), float(strike[i]), float(t[i]), float(r[i]),
             float(q[i]), str(flags[i])) for i in range(m) if well[i]]

    def run_vollib() -> None:
        for row in rows:
            with contextlib.suppress(Exception):  # vollib raises on prices out of its bounds
                vollib_iv(*row)
    vollib_cpu, vollib_wall = best_of(run_vollib, 1)
    ours = n / cpu
    vollib = len(rows) / vollib_cpu
    emit({
        "benchmark": "implied_volatility", "unit": "implied vols per second, one core",
        "n": n, "implied_vols_per_second": ours,
        "timing": "best thread CPU time of several repeats (shared machine); wall below",
        "wall_clock": {"implied_vols_per_second": n / wall,
                       "vollib_per_second": len(rows) / vollib_wall},
        "accuracy": {"well_determined_fraction": float(well.mean()),
                     "max_abs_error": float(error.max()),
                     "nan_where_well_determined": int(np.isnan(out[well]).sum())},
        "baselines": {"vollib_lets_be_rational_scalar": vollib},
        "ratios": {"vs_vollib": ours / vollib},
        "targets": {"implied_vols_per_second": 2_000_000, "max_abs_error": 1e-10},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    })


if __name__ == "__main__":
    main()
