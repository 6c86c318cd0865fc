"""Benchmark the simulator's message generation against a naive per-tick Python loop.

Prints one JSON object. ``messages_per_second`` is messages generated per second
of wall time (one core) by ``SimulatedFeed.next_batch`` called once per 20 ms
of simulated time; ``realtime_factor`` is simulated seconds per wall second at
the configured rate. The baseline draws the same kinds of messages (a price
step, a spread, quote or trade, a size) one tick at a time with ``random``.

    .venv/bin/python bench/bench_sim.py [--symbols 5000] [--rate 250000] [--seconds 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from datetime import date

import numpy as np

from core.settings import DEFAULT_SYMBOLS
from market.feeds.base import NS_PER_SECOND
from market.feeds.sim import SimulatedFeed
from market.feeds.sim_calendar import session_bounds_ns

# 03:00 New York on a Tuesday: outside the session, where ``always_open`` runs the
# configured rate exactly (in the session the U-shaped profile moves it around).
START_NS = session_bounds_ns(date(2025, 11, 25))[0] - 390 * 60 * NS_PER_SECOND


def naive_loop(n_symbols: int, messages: int, seed: int = 1) -> float:
    """Generate ``messages`` ticks one at a time; return messages per second."""
    rng = random.Random(seed)
    price = [rng.uniform(10, 500) for _ in range(n_symbols)]
    vol = [rng.uniform(0.15, 0.6) for _ in range(n_symbols)]
    out: list[tuple[int, int, int, float, float, float, float]] = []
    ts = START_NS
    dt_years = 1 / 250_000 / (252 * 23_400)
    start = time.perf_counter()
    for _ in range(messages):
        s = rng.randrange(n_symbols)
        ts += rng.randrange(1, 8_000)
        price[s] *= math.exp(vol[s] * math.sqrt(dt_years * n_symbols) * rng.gauss(0.0, 1.0))
        spread = max(0.01, round(price[s] * 1e-4 * vol[s] / 0.25, 2))
        bid = round(price[s] - spread / 2, 2)
        ask = round(bid + spread, 2)
        if rng.random() < 0.3:
            lots = min(500, int(rng.paretovariate(1.5)))
            out.append((0, s, ts, ask if rng.random() < 0.5 else bid, lots * 100.0, 0.0, 0.0))
        else:
            size = 100.0 * (1 + int(rng.expovariate(0.5)))
            out.append((1, s, ts, bid, ask, size, size))
    return messages / (time.perf_counter() - start)


def vectorised(symbols: list[str], rate: float, option_rate: float, seconds: float,
               repeat: int) -> dict[str, float]:
    """Run ``next_batch`` over ``seconds`` of simulated time in 20 ms periods, best of ``repeat``.

    Each repetition continues the same feed over the next ``seconds``.
    """
    feed = SimulatedFeed(symbols, seed=1, rate=rate, option_rate=option_rate, interval_ms=20)
    t0 = time.perf_counter()
    feed.next_batch(START_NS)  # lists the option chains once
    listing = time.perf_counter() - t0
    periods = round(seconds / 0.02)
    best: tuple[float, int, int] | None = None
    for r in range(repeat):
        stock = options = 0
        origin = START_NS + r * periods * 20_000_000
        t0 = time.perf_counter()
        for i in range(1, periods + 1):
            batch = feed.next_batch(origin + i * 20_000_000)
            stock += len(batch.ticks)
            options += len(batch.option_ticks)
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, stock, options)
    assert best is not None
    wall, stock, options = best
    return {
        "symbols": len(symbols), "rate": rate, "option_rate": option_rate,
        "simulated_s": seconds, "stock_messages": stock, "option_messages": options,
        "wall_s": round(wall, 3), "messages_per_second": round((stock + options) / wall),
        "realtime_factor": round(seconds / wall, 2), "chain_listing_s": round(listing, 3),
        "contracts": int(feed.status().detail["contracts"]),  # type: ignore[index]
    }


def warmup_seconds(symbols: list[str]) -> float:
    feed = SimulatedFeed(symbols, seed=1, rate=2_000.0)
    t0 = time.perf_counter()
    feed.history(START_NS)
    return round(time.perf_counter() - t0, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=250_000.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--baseline-messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N (shared machines)")
    args = parser.parse_args()
    universe = [f"S{i:04d}" for i in range(args.symbols)]
    np.random.default_rng(0)  # numpy import/initialisation outside the timings
    n = args.repeat
    stock_only = vectorised(universe, args.rate, 0.0, args.seconds, n)
    with_options = vectorised(universe, args.rate, args.rate / 5, args.seconds, n)
    default = vectorised(list(DEFAULT_SYMBOLS), 2_000.0, 500.0, 10.0, n)
    heavy_default = vectorised(list(DEFAULT_SYMBOLS), args.rate, args.rate / 5, args.seconds, n)
    baseline = max(naive_loop(args.symbols, args.baseline_messages) for _ in range(n))
    print(json.dumps({
        "benchmark": "sim_next_batch",
        "command": "python bench/bench_sim.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        ),
        "target_messages_per_second": 1_000_000,
        "machine": platform.processor() or platform.machine(),
        "baseline": "naive per-tick Python loop (random module), stock messages only",
        "timing": f"best of {n} runs, one core",
        "baseline_messages_per_second": round(baseline),
        "stock_only": stock_only,
        "stock_and_options": with_options,
        "default_symbols_default_rates": default,
        "default_symbols_high_rates": heavy_default,
        "speedup_vs_baseline": round(stock_only["messages_per_second"] / baseline, 1),
        "warmup_s": {"default_symbols": warmup_seconds(list(DEFAULT_SYMBOLS)),
                     f"{args.symbols}_symbols": warmup_seconds(universe)},
    }))


if __name__ == "__main__":
    main()
