"""Benchmark BSM price + 5 Greeks on one core against vollib, QuantLib and plain numpy.

Prints one JSON object: ``options_per_second`` of ``bsm_greeks_arrays`` (the numba
core the shards call) and of the dict API ``bsm_greeks`` on the same random
options, ``chain_10k_ms`` (Greeks of a 10,000-contract chain after an underlying
move, scalar spot/rate), the baselines measured in the same run (vollib's
analytical functions one option at a time, QuantLib's AnalyticEuropeanEngine,
a vectorised numpy/scipy implementation) and the ratios. Timings are the best
thread CPU time of several repeats (wall-clock figures are reported too).

    NUMBA_NUM_THREADS=1 .venv/bin/python -m bench.bench_greeks [--n 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting
from scipy.special import ndtr  # noqa: E402

from bench.common import best_of, emit  # noqa: E402
from market.greeks import bsm_greeks, bsm_greeks_arrays  # noqa: E402


def inputs(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = rng.uniform(50.0, 150.0, n)
    return {"is_call": rng.random(n) < 0.5, "S": spot,
            "K": spot * np.exp(rng.uniform(-0.5, 0.5, n)), "T": rng.uniform(0.01, 3.0, n),
            "r": rng.uniform(0.0, 0.08, n), "q": rng.uniform(0.0, 0.04, n),
            "sigma": rng.uniform(0.05, 1.0, n)}


def numpy_greeks(x: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Plain vectorised numpy/scipy BSM: the usual 'fast Python' baseline."""
    s, k, t, r, q, v = x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"]
    w = np.where(x["is_call"], 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * sqrt_t)
    d2 = d1 - v * sqrt_t
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    n1, n2 = ndtr(w * d1), ndtr(w * d2)
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    price = w * (s * dq * n1 - k * dr * n2)
    delta = w * dq * n1
    gamma = dq * pdf / (s * v * sqrt_t)
    theta = (-s * dq * pdf * v / (2 * sqrt_t) - w * r * k * dr * n2 + w * q * s * dq * n1) / 365
    vega = s * dq * pdf * sqrt_t * 0.01
    rho = w * k * t * dr * n2 * 0.01
    return price, delta, gamma, theta, vega, rho


def vollib_rate(x: dict[str, np.ndarray], n: int) -> float:
    from vollib.black_scholes_merton import black_scholes_merton as price
    from vollib.black_scholes_merton.greeks.analytical import delta, gamma, rho, theta, vega

    rows = list(zip(np.where(x["is_call"][:n], "c", "p"), x["S"][:n], x["K"][:n], x["T"][:n],
                    x["r"][:n], x["sigma"][:n], x["q"][:n], strict=True))

    def run() -> None:
        for row in rows:
            for f in (price, delta, gamma, theta, vega, rho):
                f(*row)
    return n / best_of(run, 2)[0]


def quantlib_rate(x: dict[str, np.ndarray], n: int) -> float:
    """QuantLib: one option with its own flat curves per contract (set up untimed)."""
    import QuantLib as ql  # noqa: N813

    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    options = []
    for i in range(n):
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(float(x["S"][i]))),
            ql.YieldTermStructureHandle(ql.FlatForward(today, float(x["q"][i]), dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, float(x["r"][i]), dc)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(
                today, ql.NullCalendar(), float(x["sigma"][i]), dc)))
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if x["is_call"][i] else ql.Option.Put,
                                       float(x["K"][i]))
        option = ql.EuropeanOption(payoff, ql.EuropeanExercise(
            today + max(1, int(x["T"][i] * 365))))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        options.append(option)

    def run() -> None:
        for option in options:
            option.recalculate()  # force the engine to run each repeat
            option.NPV()
            option.delta()
            option.gamma()
            option.theta()
            option.vega()
            option.rho()
    return n / best_of(run, 2)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x = inputs(args.n)
    out = np.empty((6, args.n))

    core_cpu, core_wall = best_of(lambda: bsm_greeks_arrays(
        x["is_call"], x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], out=out), args.repeats)
    core = args.n / core_cpu
    api = args.n / best_of(lambda: bsm_greeks(x["is_call"], x["S"], x["K"], x["T"], x["r"],
                                              x["q"], x["sigma"]), args.repeats)[0]
    numpy_rate = args.n / best_of(lambda: numpy_greeks(x), 3)[0]

    chain = inputs(10_000, seed=2)
    chain_out = np.empty((6, 10_000))
    spot = [100.0]

    def chain_move() -> None:
        spot[0] *= 1.0001  # the underlying moved: every contract's Greeks change
        bsm_greeks_arrays(chain["is_call"], spot[0], chain["K"], chain["T"], 0.04, 0.01,
                          chain["sigma"], out=chain_out)
    chain_cpu, chain_wall = best_of(chain_move, 50)
    chain_ms = chain_cpu * 1e3

    vollib = vollib_rate(x, 3000)
    quantlib = quantlib_rate(x, 3000)
    emit({
        "benchmark": "bsm_greeks", "unit": "options per second (price + 5 Greeks), one core",
        "n": args.n,
        "options_per_second": core, "options_per_second_dict_api": api,
        "chain_10k_ms": chain_ms,
        "timing": "best thread CPU time of several repeats (shared machine); wall below",
        "wall_clock": {"options_per_second": args.n / core_wall,
                       "chain_10k_ms": chain_wall * 1e3},
        "baselines": {"vollib_scalar": vollib, "quantlib_analytic_european": quantlib,
                      "numpy_vectorised": numpy_rate},
        "ratios": {"vs_vollib": core / vollib, "vs_quantlib": core / quantlib,
                   "vs_numpy": core / numpy_rate},
        "targets": {"options_per_second": 10_000_000, "chain_10k_ms": 2.0},
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": os.cpu_count()},
    })


if __name__ == "__main__":
    main()
