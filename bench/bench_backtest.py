"""Benchmark the backtest engine against vectorbt, and the Ray sweep at 2 workers against 1.

    .venv/bin/python -m bench.bench_backtest sweep [--lake DIR] [--symbols 5]
    .venv/bin/python -m bench.bench_backtest ray [--lake DIR] [--symbols 500]

``sweep``: the moving-average-cross grid ``fast=5:50:5 × slow=60:150:10`` (100 pairs)
over the first ``--symbols`` symbols of the lake, one core: marketray's ``run_grid``
against vectorbt's ``MA.run`` + ``ma_crossed_above/below`` + ``Portfolio.from_signals``
(close fills, fees, fractional), one symbol at a time. Each engine runs in its own
process (so each peak RSS is its own), compiles first on a small input (timed apart),
then runs the sweep; the parent reports wall and CPU seconds, bar × pair steps per
second, the ratio vectorbt / marketray, and how many runs agree (trade count equal and
total return to 1e-9 relative).

``ray``: ``pipelines.backtest.run`` over ``--symbols`` symbols with a fresh local Ray of
2 workers, then 1 (each in its own process): sweep wall time (Parquet in and out
included, Ray start-up not), the ratio, and peak RSS per worker.

A missing lake is built first with ``pipelines.backfill`` (simulator, 252 sessions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread settings
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too
from bench.common import emit  # noqa: E402

FAST = list(range(5, 55, 5))
SLOW = list(range(60, 160, 10))
COMMISSION = 0.0005
CASH = 10_000.0
_ENTRIES = _EXITS = np.empty((0, 0), dtype=np.bool_)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ensure_lake(lake: Path, symbols: int, sessions: int) -> None:
    from market.research.data import list_symbols

    if lake.exists() and len(list_symbols(lake)) >= symbols:
        return
    from pipelines.backfill import run as backfill

    backfill(lake, universe=max(symbols, 5), sessions=sessions, use_ray=False)


def _closes(lake: Path, count: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    from market.research.data import list_symbols, load_bars

    names = list_symbols(lake)[:count]
    loaded = load_bars(lake, names)
    return names, [b.bars.close for b in loaded], [b.timestamp_ns for b in loaded]


def engine_marketray(lake: Path, count: int) -> dict[str, Any]:
    """One engine process: compile, then sweep; results per run into a frame."""
    from market.research.backtest import BacktestConfig, run_grid
    from market.research.grid import build_grid
    from market.research.strategies import Bars, get

    names, closes, _ = _closes(lake, count)
    grid = build_grid(get("sma_cross"), {"fast": FAST, "slow": SLOW})
    config = BacktestConfig(fill="close", commission=COMMISSION, cash=CASH,
                            periods_per_year=98_280)
    start = time.perf_counter()
    small = closes[0][:2_000]
    run_grid(Bars(small, small, small, small, small), get("sma_cross"), grid[:2], config)
    compile_s = time.perf_counter() - start
    rows = []
    wall = time.perf_counter()
    cpu = _cpu_s()
    for name, close in zip(names, closes, strict=True):
        bars = Bars(close, close, close, close, np.ones_like(close))
        for result in run_grid(bars, get("sma_cross"), grid, config):
            rows.append((name, int(result.params["fast"]), int(result.params["slow"]),
                         int(result.stat("trades")), result.stat("total_return")))
    return {"compile_s": compile_s, "wall_s": time.perf_counter() - wall,
            "cpu_s": _cpu_s() - cpu, "rows": rows,
            "steps": sum(len(c) for c in closes) * len(grid)}


def engine_vectorbt(lake: Path, count: int) -> dict[str, Any]:
    """vectorbt's documented MA-cross sweep, one symbol at a time."""
    import pandas as pd
    import vectorbt as vbt

    names, closes, stamps = _closes(lake, count)
    fast = [f for f in FAST for _ in SLOW]
    slow = [s for _ in FAST for s in SLOW]

    def sweep(close: pd.Series) -> Any:
        fast_ma = vbt.MA.run(close, fast, short_name="fast")
        slow_ma = vbt.MA.run(close, slow, short_name="slow")
        entries = fast_ma.ma_crossed_above(slow_ma)
        exits = fast_ma.ma_crossed_below(slow_ma)
        global _ENTRIES, _EXITS
        _ENTRIES, _EXITS = entries.to_numpy(), exits.to_numpy()  # for the untimed check
        return vbt.Portfolio.from_signals(close, entries, exits, fees=COMMISSION,
                                          init_cash=CASH, freq="1min")

    start = time.perf_counter()
    index = pd.to_datetime(stamps[0][:2_000], utc=True)
    warm = sweep(pd.Series(closes[0][:2_000], index))
    warm.total_return()
    warm.trades.count()
    compile_s = time.perf_counter() - start
    rows = []
    wall = time.perf_counter()
    cpu = _cpu_s()
    wall_s = cpu_s = 0.0
    checks = {"runs_signals_differ": 0, "runs_signals_differ_only_at_ties": 0,
              "runs_engine_on_vectorbt_signals_agree": 0}
    for name, close, times in zip(names, closes, stamps, strict=True):
        wall, cpu = time.perf_counter(), _cpu_s()
        portfolio = sweep(pd.Series(close, pd.to_datetime(times, utc=True)))
        total = portfolio.total_return().to_numpy()
        trades = portfolio.trades.count().to_numpy()
        wall_s += time.perf_counter() - wall
        cpu_s += _cpu_s() - cpu
        rows += [(name, f, s, int(t), float(r))
                 for f, s, t, r in zip(fast, slow, trades, total, strict=True)]
        _check_signals(close, portfolio, fast, slow, total, trades, checks)
    return {"compile_s": compile_s, "wall_s": wall_s, "cpu_s": cpu_s, "rows": rows,
            "steps": sum(len(c) for c in closes) * len(fast), "checks": checks}


def _check_signals(close: np.ndarray, portfolio: Any, fast: list[int], slow: list[int],
                   total: np.ndarray, trades: np.ndarray, checks: dict[str, int]) -> None:
    """Untimed: where vectorbt's signals differ from ours, and our engine on its signals."""
    from market.research.backtest import BacktestConfig, simulate
    from market.research.strategies import Bars, IndicatorCache, get

    bars = Bars(close, close, close, close, np.ones_like(close))
    cache = IndicatorCache(bars)
    config = BacktestConfig(commission=COMMISSION, cash=CASH, periods_per_year=98_280)
    for j, (f, s) in enumerate(zip(fast, slow, strict=True)):
        ours = get("sma_cross").signal(bars, {"fast": f, "slow": s}, cache)
        theirs_entry = _ENTRIES[:, j]
        theirs_exit = _EXITS[:, j]
        differ = np.flatnonzero((theirs_entry != (ours == 1)) | (theirs_exit != (ours == -1)))
        if len(differ):
            checks["runs_signals_differ"] += 1
            gap = np.abs(cache.sma(f) - cache.sma(s))
            tie = gap <= 1e-9 * close
            near = tie[differ] | tie[np.maximum(differ - 1, 0)]
            checks["runs_signals_differ_only_at_ties"] += int(bool(near.all()))
        signals = np.where(theirs_entry, 1, np.where(theirs_exit, -1, 0)).astype(np.int8)
        stats, _ = simulate(bars, signals, config)
        if stats[7] == trades[j] and abs(stats[0] - total[j]) <= 1e-9 * max(abs(total[j]),
                                                                             1e-12):
            checks["runs_engine_on_vectorbt_signals_agree"] += 1


def _child(argv: list[str]) -> tuple[dict[str, Any], int]:
    """Run this module with ``argv`` in a fresh process; return its JSON and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.bench_backtest", *argv,
                                    "--result", out.name],
                                   cwd=Path(__file__).resolve().parents[1])
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"{argv} failed with {process.returncode}")
        return json.loads(Path(out.name).read_text()), usage.ru_maxrss * 1024


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    _ensure_lake(args.lake, args.symbols, args.sessions)
    ours, ours_rss = _child(["engine", "marketray", "--lake", str(args.lake),
                             "--symbols", str(args.symbols)])
    theirs, theirs_rss = _child(["engine", "vectorbt", "--lake", str(args.lake),
                                 "--symbols", str(args.symbols)])
    columns = ["symbol", "fast", "slow", "trades", "total_return"]
    a = pl.DataFrame(ours["rows"], schema=columns, orient="row")
    b = pl.DataFrame(theirs["rows"], schema=columns, orient="row")
    both = a.join(b, on=["symbol", "fast", "slow"], suffix="_vbt")
    same_trades = both["trades"] == both["trades_vbt"]
    close_return = ((both["total_return"] - both["total_return_vbt"]).abs()
                    <= 1e-9 * both["total_return_vbt"].abs().clip(1e-12))
    return {
        "benchmark": "sma_cross sweep, one core",
        "symbols": args.symbols, "pairs": len(FAST) * len(SLOW),
        "bars_per_symbol": ours["steps"] // (len(FAST) * len(SLOW) * args.symbols),
        "marketray": {k: ours[k] for k in ("compile_s", "wall_s", "cpu_s")}
        | {"steps_per_s_wall": ours["steps"] / ours["wall_s"],
           "steps_per_s_cpu": ours["steps"] / ours["cpu_s"], "peak_rss_mb": ours_rss / 2**20},
        "vectorbt": {k: theirs[k] for k in ("compile_s", "wall_s", "cpu_s")}
        | {"steps_per_s_wall": theirs["steps"] / theirs["wall_s"],
           "steps_per_s_cpu": theirs["steps"] / theirs["cpu_s"],
           "peak_rss_mb": theirs_rss / 2**20},
        "speedup_wall": theirs["wall_s"] / ours["wall_s"],
        "speedup_cpu": theirs["cpu_s"] / ours["cpu_s"],
        "target_speedup": 25,
        "runs_compared": both.height,
        "runs_same_trade_count": int(same_trades.sum()),
        "runs_total_return_within_1e-9": int(close_return.sum()),
        **theirs["checks"],
    }


def ray_run(args: argparse.Namespace) -> dict[str, Any]:
    """One sweep through the job with ``--workers`` Ray workers (a child process)."""
    from pipelines.backtest import run

    with tempfile.TemporaryDirectory() as out:
        job = run(args.lake, "sma_cross", {"fast": FAST, "slow": SLOW}, commission=COMMISSION,
                  cash=CASH, workers=args.workers, out=out,
                  symbols=_symbols(args.lake, args.symbols))
        timings = job.manifest["timings"]
        return {"sweep_wall_s": timings["sweep_wall_s"], "write_s": timings["write_s"],
                "compile_s_max_per_worker": timings["compile_s_max_per_worker"],
                # summed over tasks: the parts of a worker's time (the bound on the sweep)
                "read_s_total": timings["read_s_total"],
                "compute_s_total": timings["compute_s_total"],
                "read_cpu_s_total": timings["read_cpu_s_total"],
                "compute_cpu_s_total": timings["compute_cpu_s_total"],
                "runs": job.manifest["runs"], "bars": job.manifest["bars"],
                "peak_rss_mb_per_worker": [b / 2**20 for b in
                                           job.manifest["peak_rss_bytes_per_worker"]],
                "tasks": job.manifest["config"]["tasks"],
                "summary_sha": str(job.summary.hash_rows().sum())}


def _symbols(lake: Path, count: int) -> list[str]:
    from market.research.data import list_symbols

    return list_symbols(lake)[:count]


def ray_bench(args: argparse.Namespace) -> dict[str, Any]:
    _ensure_lake(args.lake, args.symbols, args.sessions)
    results = {}
    for workers in (2, 1):
        result, _ = _child(["ray-run", "--lake", str(args.lake), "--symbols",
                            str(args.symbols), "--workers", str(workers)])
        result["job_s"] = result["sweep_wall_s"] + result["write_s"]
        results[f"workers_{workers}"] = result
    two, one = results["workers_2"], results["workers_1"]
    return {"benchmark": "sma_cross sweep on Ray", "symbols": args.symbols,
            "pairs": len(FAST) * len(SLOW), **results,
            "speedup_2_over_1": one["job_s"] / two["job_s"], "target_speedup": 1.6,
            "same_summary": one["summary_sha"] == two["summary_sha"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="sweep",
                        choices=("sweep", "ray", "engine", "ray-run"))
    parser.add_argument("engine", nargs="?", choices=("marketray", "vectorbt"))
    parser.add_argument("--lake", type=Path,
                        default=Path(tempfile.gettempdir()) / "marketray-bench-lake")
    parser.add_argument("--symbols", type=int, default=None)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "engine":
        run = engine_marketray if args.engine == "marketray" else engine_vectorbt
        Path(args.result).write_text(json.dumps(run(args.lake, args.symbols)))
    elif args.mode == "ray-run":
        Path(args.result).write_text(json.dumps(ray_run(args)))
    elif args.mode == "sweep":
        args.symbols = args.symbols or 5
        emit(sweep(args))
    else:
        args.symbols = args.symbols or 500
        emit(ray_bench(args))


if __name__ == "__main__":
    main()
