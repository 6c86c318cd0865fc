"""Benchmark an option-chain refresh and its analytics on one core against vollib.

Prints one JSON object for a 10,000-contract chain (40 expiries x 125 strikes x
call/put) after an underlying move:

* ``refresh_ms``: time to expiry, implied volatility from the mid prices and the
  five Greeks at that volatility, through the public array API (what a shard does);
* ``greeks_only_ms``: just the Greeks with known volatilities (``bsm_greeks_arrays``);
* ``summary_ms``: ``chain_summary`` (ratios, term structure, skew, max pain, GEX/DEX,
  OI change, unusual activity);
* the baseline: the same refresh with vollib, one contract at a time.

Timings are the best thread CPU time of several repeats (shared machines).

    NUMBA_NUM_THREADS=1 .venv/bin/python -m bench.bench_chain
"""

from __future__ import annotations

import contextlib
import os
import platform

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting

from bench.common import best_of, emit  # noqa: E402
from market.chain_analytics import chain_summary  # noqa: E402
from market.greeks import (  # noqa: E402
    bsm_greeks,
    bsm_greeks_arrays,
    implied_volatility,
    time_to_expiry,
)


def main() -> None:
    rng = np.random.default_rng(9)
    spot = 100.0
    now_ns = int(np.datetime64("2026-11-24T15:00", "ns").astype(np.int64))
    expiries = np.datetime64("2026-11-27", "D") + 7 * np.arange(40)
    strikes = np.linspace(50.0, 150.0, 125)
    exp = np.repeat(expiries, 250)
    strike = np.tile(np.repeat(strikes, 2), 40)
    is_call = np.tile([True, False], 5000)
    t = time_to_expiry(exp, now_ns)
    true_iv = 0.25 - 0.2 * np.log(strike / spot) + 0.05 * np.sqrt(t)
    price = bsm_greeks(is_call, spot, strike, t, 0.04, 0.01, true_iv)["price"]
    price = np.maximum(price, 0.01)
    volume = rng.integers(0, 500, 10_000).astype(float)
    open_interest = rng.integers(0, 5000, 10_000).astype(float)
    moved = spot * 1.001  # quotes unchanged, underlying moved: everything is recomputed

    def refresh() -> dict[str, np.ndarray]:
        years = time_to_expiry(exp, now_ns)
        iv = implied_volatility(price, moved, strike, years, 0.04, 0.01, is_call)
        g = bsm_greeks(is_call, moved, strike, years, 0.04, 0.01,
                       np.where(np.isfinite(iv), iv, 0.2))
        g["iv"] = iv
        return g

    refresh_cpu, refresh_wall = best_of(refresh, 30)
    out = np.empty((6, 10_000))
    greeks_cpu, greeks_wall = best_of(
        lambda: bsm_greeks_arrays(is_call, moved, strike, t, 0.04, 0.01, true_iv, out=out), 50)
    g = refresh()
    summary_cpu, _ = best_of(lambda: chain_summary(
        is_call=is_call, strike=strike, expiration=exp, volume=volume,
        open_interest=open_interest, implied_volatility=g["iv"], delta=g["delta"],
        gamma=g["gamma"], underlying_price=moved, previous_open_interest=open_interest * 0.9,
        as_of_ns=now_ns), 5)

    from vollib.black_scholes_merton.greeks.analytical import delta, gamma, rho, theta, vega
    from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

    flags = np.where(is_call, "c", "p")

    def vollib_refresh() -> None:
        for i in range(10_000):
            args = (float(price[i]), moved, float(strike[i]), float(t[i]), 0.04, 0.01,
                    str(flags[i]))
            sigma = 0.2
            with contextlib.suppress(Exception):  # vollib raises outside its bounds
                sigma = vollib_iv(*args)
            for f in (delta, gamma, theta, vega, rho):
                f(str(flags[i]), moved, float(strike[i]), float(t[i]), 0.04, sigma, 0.01)
    vollib_cpu, _ = best_of(vollib_refresh, 1)
    emit({
        "benchmark": "option_chain", "contracts": 10_000,
        "timing": "best thread CPU time of several repeats (shared machine); wall below",
        "refresh_ms": refresh_cpu * 1e3, "greeks_only_ms": greeks_cpu * 1e3,
        "summary_ms": summary_cpu * 1e3,
        "wall_clock": {"refresh_ms": refresh_wall * 1e3, "greeks_only_ms": greeks_wall * 1e3},
        "baselines": {"vollib_refresh_ms": vollib_cpu * 1e3},
        "ratios": {"refresh_vs_vollib": vollib_cpu / refresh_cpu},
        "targets": {"greeks_only_ms": 2.0},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    })


if __name__ == "__main__":
    main()
