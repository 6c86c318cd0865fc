"""Distributed strategy backtests and parameter sweeps over many symbols (Ray tasks).

    python -m pipelines.backtest --data PATH --strategy sma_cross \\
        --param fast=5:50:5 --param slow=60:150:10 --out DIR [--workers 2]
    ray job submit --working-dir . -- python -m pipelines.backtest \
        --data s3://bucket/lake --out s3://bucket/runs/x ...
    marketray research backtest --data PATH ...

The driver lists the symbols, cuts symbols × parameter sets into chunks (a few per
worker, never one task per combination), and each Ray task reads its symbols' bars
itself (``--data``, a path or a URI, must be readable from every node) and runs
:func:`market.research.backtest.run_grid`. Outputs under ``--out``: ``summary.parquet``
(one row per symbol and parameter set, sorted), ``trades.parquet`` (every run's trades
when the sweep has at most ``ALL_TRADES_MAX_RUNS`` runs, else the best N runs'),
``equity.parquet`` (the best N runs' equity and drawdown per bar), ``report.html`` and
``manifest.json``; ``--out`` is a path or a URI. :func:`run` is the same job as a Python call.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import InvalidInput, MarketrayError
from core.storage import Storage
from market.research import data as research_data
from market.research.backtest import TRADE_COLUMNS, BacktestConfig, RunResult, run_grid
from market.research.grid import build_grid
from market.research.stats import STAT_NAMES
from market.research.strategies import Bars, get
from pipelines import _jobs

ALL_TRADES_MAX_RUNS = 2_000
TASKS_PER_WORKER = 4
MAX_SYMBOLS_PER_TASK = 16
_WARM: dict[str, float] = {}


@dataclass
class ChunkResult:
    """What one task hands back: per (symbol, parameter set) statistics, maybe trades."""

    symbols: list[str]
    param_index: list[int]
    stats: np.ndarray  # (len(symbols) * len(param_index), len(STAT_NAMES)), symbol-major
    trades: list[tuple[str, int, np.ndarray, np.ndarray]]  # symbol, param index, rows, times
    bars: int
    timings: dict[str, float]
    pid: int
    peak_rss_bytes: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _warm_up(strategy: str, grid: Sequence[Mapping[str, float]], config: BacktestConfig) -> float:
    """Compile (or load from numba's cache) the kernels once per process; return seconds."""
    if strategy in _WARM:
        return 0.0
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 512)))
    bars = Bars(close, close, close, close, np.ones_like(close))
    run_grid(bars, get(strategy), list(grid[:1]), config)
    _WARM[strategy] = time.perf_counter() - start
    return _WARM[strategy]


def backtest_chunk(data: str | Storage, symbols: Sequence[str], strategy: str,
                   grid: Sequence[Mapping[str, float]], param_index: Sequence[int],
                   config: Mapping[str, Any], keep_trades: bool) -> ChunkResult:
    """Backtest ``grid[param_index]`` on each of ``symbols``; the body of one Ray task."""
    import os

    settings = dict(config)
    infer = settings.pop("periods_per_year", None) is None
    chosen = [grid[i] for i in param_index]
    compile_s = _warm_up(strategy, chosen, BacktestConfig(**settings))
    # CPU seconds beside wall seconds: on a shared host they bound what the job needs
    start, cpu = time.perf_counter(), time.process_time()
    loaded = research_data.load_bars(data, symbols)
    read_s, read_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    rows: list[np.ndarray] = []
    trades = []
    done: list[str] = []
    skipped: list[tuple[str, str]] = []
    total_bars = 0
    for item in loaded:
        per_year = (research_data.periods_per_year(item.timestamp_ns) if infer
                    else float(config["periods_per_year"]))
        try:
            results = run_grid(item.bars, get(strategy), chosen,
                               BacktestConfig(**settings, periods_per_year=per_year))
        except InvalidInput as exc:  # one bad symbol is reported, the rest keep going
            skipped.append((item.symbol, exc.message))
            continue
        done.append(item.symbol)
        total_bars += len(item.bars)
        rows.extend(r.stats for r in results)
        if keep_trades:
            for index, result in zip(param_index, results, strict=True):
                trades.append((item.symbol, index, result.trades, item.timestamp_ns))
    found = {item.symbol for item in loaded}
    skipped += [(s, "no bars") for s in symbols if s not in found]
    stats = np.vstack(rows) if rows else np.empty((0, len(STAT_NAMES)))
    return ChunkResult(done, list(param_index), stats, trades, total_bars,
                       {"compile_s": compile_s, "read_s": read_s,
                        "compute_s": time.perf_counter() - start, "read_cpu_s": read_cpu_s,
                        "compute_cpu_s": time.process_time() - cpu},
                       os.getpid(), _jobs.peak_rss_bytes(), skipped)


def _chunks(symbols: Sequence[str], n_params: int, workers: int,
            symbols_per_task: int | None) -> list[tuple[list[str], list[int]]]:
    target = max(1, workers * TASKS_PER_WORKER)
    if symbols_per_task is None:
        # capped: a task holds all its symbols' bars at once, so its memory grows with
        # the chunk, not with the universe (bench_backtest ray reports it per worker)
        symbols_per_task = min(MAX_SYMBOLS_PER_TASK,
                               max(1, math.ceil(len(symbols) / target)))
    symbol_chunks = [list(symbols[i:i + symbols_per_task])
                     for i in range(0, len(symbols), symbols_per_task)]
    # Too few symbols to keep the workers busy: cut the grid as well.
    param_chunks = max(1, min(n_params, math.ceil(target / len(symbol_chunks))))
    size = math.ceil(n_params / param_chunks)
    params = [list(range(i, min(i + size, n_params))) for i in range(0, n_params, size)]
    return [(s, p) for s in symbol_chunks for p in params]


@dataclass
class BacktestJob:
    """The job's results: the tables it writes, the manifest, and where they went."""

    summary: pl.DataFrame
    trades: pl.DataFrame
    equity: pl.DataFrame
    manifest: dict[str, Any]
    out: Path | str | None  # a local path, else the output's URI


def _param_columns(grid: Sequence[Mapping[str, float]], names: Sequence[str],
                   index: np.ndarray) -> dict[str, pl.Series]:
    columns = {}
    for name in names:
        values = np.asarray([grid[i][name] for i in index], dtype=np.float64)
        whole = bool(np.all(values == np.round(values)))
        columns[name] = pl.Series(name, values.astype(np.int64) if whole else values)
    return columns


def _trade_frame(rows: list[tuple[str, int, np.ndarray, np.ndarray]],
                 grid: Sequence[Mapping[str, float]], names: Sequence[str]) -> pl.DataFrame:
    symbol: list[str] = []
    index: list[np.ndarray] = []
    blocks: list[np.ndarray] = []
    entry_ns: list[np.ndarray] = []
    exit_ns: list[np.ndarray] = []
    for sym, param, trades, times in rows:
        symbol += [sym] * len(trades)
        index.append(np.full(len(trades), param))
        blocks.append(trades)
        entry_ns.append(times[trades[:, 0].astype(np.int64)])
        exit_bar = trades[:, 2].astype(np.int64)
        exit_ns.append(np.where(exit_bar >= 0, times[np.maximum(exit_bar, 0)], -1))
    table = np.vstack(blocks) if blocks else np.empty((0, len(TRADE_COLUMNS)))
    params = np.concatenate(index) if index else np.empty(0, dtype=np.int64)
    utc = pl.Datetime("ns", "UTC")
    exits = np.concatenate(exit_ns) if exit_ns else np.empty(0, dtype=np.int64)
    return pl.DataFrame({
        "symbol": pl.Series(symbol, dtype=pl.String),
        **_param_columns(grid, names, params),
        "entry_time": pl.Series(np.concatenate(entry_ns) if entry_ns else [], dtype=pl.Int64
                                ).cast(utc),
        "entry_price": table[:, 1],
        # a trade still open at the end has no exit time; its exit_price is the last close
        "exit_time": pl.Series(exits, dtype=pl.Int64).cast(utc).set(
            pl.Series(exits < 0), None) if len(exits) else pl.Series([], dtype=utc),
        "exit_price": table[:, 3],
        "size": table[:, 4],
        "pnl": table[:, 5],
    })


def run(data: str | Path | Storage, strategy: str,
        params: Sequence[str] | Mapping[str, Sequence[float]], *, fill: str = "close",
        commission: float = 0.0, cash: float = 10_000.0, size: str = "fractional",
        direction: str = "long", periods_per_year: float | None = None,
        out: str | Path | Storage | None = None, workers: int | None = None,
        address: str | None = None,
        use_ray: bool = True, best: int = 10, rank_by: str = "sharpe",
        symbols: Sequence[str] | None = None, symbols_per_task: int | None = None,
        progress: bool = False) -> BacktestJob:
    """Run the sweep and return its tables; with ``out``, also write them there.

    ``params`` is ``["fast=5:50:5", ...]`` or ``{"fast": [5, 10], ...}``. ``use_ray=False``
    runs the same chunks in this process (one core). Results are identical either way.
    ``data`` and ``out`` are paths, URIs or Storages.
    """
    started = time.perf_counter()
    chosen = get(strategy)
    grid = build_grid(chosen, params)
    config = BacktestConfig(fill=fill, commission=commission, cash=cash,  # type: ignore[arg-type]
                            size=size, direction=direction,  # type: ignore[arg-type]
                            periods_per_year=periods_per_year or 252.0)
    if rank_by not in STAT_NAMES:
        raise InvalidInput(f"rank_by must be one of {', '.join(STAT_NAMES)}")
    data_path = _jobs.input_location(data)
    target = _jobs.output_storage(out) if out is not None else None
    version = research_data.data_version(data_path)
    universe = list(symbols) if symbols else research_data.list_symbols(data_path)
    if not universe:
        raise InvalidInput(f"no symbols in {data_path}")
    keep_all = len(universe) * len(grid) <= ALL_TRADES_MAX_RUNS
    settings = asdict(config) | {"periods_per_year": periods_per_year}
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        workers = workers or _jobs.cluster_cpus()
    else:
        workers = 1
    chunks = _chunks(universe, len(grid), workers, symbols_per_task)
    bar = _jobs.Progress(len(universe) * len(grid), enabled=progress, what="runs")
    results: list[ChunkResult] = []
    sweep_start = time.perf_counter()
    if use_ray:
        task = ray.remote(num_cpus=1)(backtest_chunk)
        pending = list(chunks)
        in_flight: dict[Any, tuple[list[str], list[int]]] = {}
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                syms, idx = pending.pop(0)
                ref = task.remote(data_path, syms, strategy, grid, idx, settings, keep_all)
                in_flight[ref] = (syms, idx)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            syms, idx = in_flight.pop(ready[0])
            result: ChunkResult = ray.get(ready[0])
            results.append(result)
            bar.advance(len(syms) * len(idx), result.bars * len(idx))
    else:
        for syms, idx in chunks:
            result = backtest_chunk(data_path, syms, strategy, grid, idx, settings,
                                    keep_all)
            results.append(result)
            bar.advance(len(syms) * len(idx), result.bars * len(idx))
    bar.close()
    sweep_s = time.perf_counter() - sweep_start

    summary = _summary(results, grid, chosen.params)
    best_frame, best_runs = _best(summary, rank_by, best, chosen.params)
    rerun = _rerun_best(data_path, strategy, grid, best_runs, settings)
    trade_rows = ([t for r in results for t in r.trades] if keep_all
                  else [(s, i, res.trades, ts) for s, i, res, ts in rerun])
    trades = _trade_frame(sorted(trade_rows, key=lambda t: (t[0], t[1])), grid, chosen.params)
    equity = _equity_frame(rerun, grid, chosen.params)
    skipped = sorted({s for r in results for s in r.skipped})
    per_worker: dict[int, int] = {}
    for r in results:
        per_worker[r.pid] = max(per_worker.get(r.pid, 0), r.peak_rss_bytes)
    manifest: dict[str, Any] = {
        "job": "backtest",
        "config": {"data": str(data_path), "strategy": strategy,
                   "params": list(params) if not isinstance(params, Mapping)
                   else {k: list(v) for k, v in params.items()},
                   "grid_size": len(grid), "symbols": len(universe), **settings,
                   "best": best, "rank_by": rank_by,
                   "trades_written": "all" if keep_all else f"best {best}",
                   "workers": workers, "ray": use_ray, "tasks": len(chunks)},
        "data_version": version,
        "libraries": _jobs.library_versions(),
        "seed": None,  # the backtest draws nothing at random
        "timings": {
            "compile_s_max_per_worker": max((r.timings["compile_s"] for r in results),
                                            default=0.0),
            "read_s_total": sum(r.timings["read_s"] for r in results),
            "compute_s_total": sum(r.timings["compute_s"] for r in results),
            "read_cpu_s_total": sum(r.timings["read_cpu_s"] for r in results),
            "compute_cpu_s_total": sum(r.timings["compute_cpu_s"] for r in results),
            "sweep_wall_s": sweep_s,
        },
        "bars": sum(r.bars for r in results if r.param_index[:1] == [0]),
        "runs": summary.height,
        "peak_rss_bytes_per_worker": sorted(per_worker.values()),
        "skipped": [{"symbol": s, "reason": why} for s, why in skipped],
        "best": best_frame.to_dicts(),
    }
    if target is not None:
        write_start = time.perf_counter()
        target.makedirs()
        _jobs.write_table(target, "summary.parquet", summary.drop("_param"))
        _jobs.write_table(target, "trades.parquet", trades)
        _jobs.write_table(target, "equity.parquet", equity)
        from pipelines._report import backtest_report

        target.write_text("report.html", backtest_report(
            summary, equity, chosen.params, strategy=strategy, rank_by=rank_by))
        manifest["timings"]["write_s"] = time.perf_counter() - write_start
    manifest["timings"]["total_wall_s"] = time.perf_counter() - started
    if target is not None:
        _jobs.write_manifest(target, manifest)
    return BacktestJob(summary.drop("_param"), trades, equity, manifest,
                       _jobs.shown(target) if target is not None else None)


def _summary(results: Sequence[ChunkResult], grid: Sequence[Mapping[str, float]],
             names: Sequence[str]) -> pl.DataFrame:
    symbols: list[str] = []
    index: list[int] = []
    blocks = []
    for r in results:
        for s in r.symbols:
            symbols += [s] * len(r.param_index)
            index += r.param_index
        blocks.append(r.stats)
    stats = np.vstack(blocks) if blocks else np.empty((0, len(STAT_NAMES)))
    order = np.lexsort((np.asarray(index), np.asarray(symbols, dtype=object).astype(str)))
    idx = np.asarray(index, dtype=np.int64)[order]
    frame = pl.DataFrame({
        "symbol": pl.Series([symbols[i] for i in order], dtype=pl.String),
        **_param_columns(grid, names, idx),
        **{name: stats[order, j] for j, name in enumerate(STAT_NAMES)},
    })
    return frame.with_columns(pl.col("trades").cast(pl.Int64),
                              pl.col("max_drawdown_bars").cast(pl.Int64),
                              pl.Series("_param", idx))


def _best(summary: pl.DataFrame, rank_by: str, count: int, names: Sequence[str]
          ) -> tuple[pl.DataFrame, list[tuple[str, int]]]:
    ranked = (summary.with_columns(pl.col(rank_by).fill_nan(None).alias("_key"))
              .sort(["_key", "symbol", "_param"], descending=[True, False, False],
                    nulls_last=True).head(count))
    runs = list(zip(ranked["symbol"].to_list(), ranked["_param"].to_list(), strict=True))
    shown = ranked.select("symbol", *names, rank_by, "total_return", "max_drawdown", "trades")
    return shown, runs


def _rerun_best(data: str | Storage, strategy: str, grid: Sequence[Mapping[str, float]],
                runs: Sequence[tuple[str, int]], settings: Mapping[str, Any]
                ) -> list[tuple[str, int, RunResult, np.ndarray]]:
    """Run the best runs again in the driver to keep their equity curves and trades."""
    if not runs:
        return []
    config = dict(settings)
    fixed = config.pop("periods_per_year")
    loaded = {b.symbol: b for b in research_data.load_bars(data, sorted({s for s, _ in runs}))}
    out = []
    for symbol, index in runs:
        item = loaded[symbol]
        per_year = fixed or research_data.periods_per_year(item.timestamp_ns)
        result = run_grid(item.bars, get(strategy), [grid[index]],
                          BacktestConfig(**config, periods_per_year=per_year),
                          keep_equity=True)[0]
        out.append((symbol, index, result, item.timestamp_ns))
    return out


def _equity_frame(rerun: Sequence[tuple[str, int, RunResult, np.ndarray]],
                  grid: Sequence[Mapping[str, float]], names: Sequence[str]) -> pl.DataFrame:
    frames = []
    for rank, (symbol, index, result, times) in enumerate(rerun, start=1):
        assert result.equity is not None
        curve = result.equity
        drawdown = curve / np.maximum.accumulate(curve) - 1.0
        frames.append(pl.DataFrame({
            "rank": np.full(len(curve), rank, dtype=np.int64),
            "symbol": [symbol] * len(curve),
            **{n: np.full(len(curve), grid[index][n]) for n in names},
            "timestamp": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
            "equity": curve,
            "drawdown": drawdown,
        }))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research backtest``)."""
    parser.add_argument("--data", required=True,
                        help="history lake or Parquet/CSV of bars: a path or a URI")
    parser.add_argument("--strategy", default="sma_cross")
    parser.add_argument("--param", action="append", default=[],
                        help="NAME=START:STOP:STEP (STOP included) or NAME=VALUE; repeatable")
    parser.add_argument("--fill", choices=("close", "next_open"), default="close")
    parser.add_argument("--commission", type=float, default=0.0, help="rate of traded value")
    parser.add_argument("--cash", type=float, default=10_000.0)
    parser.add_argument("--size", choices=("fractional", "whole"), default="fractional")
    parser.add_argument("--direction", choices=("long", "long_short"), default="long")
    parser.add_argument("--periods-per-year", type=float, default=None,
                        help="bars per year for annualising (default: inferred)")
    parser.add_argument("--symbols", default=None, help="comma-separated subset")
    parser.add_argument("--out", required=True, help="output directory: a path or a URI")
    parser.add_argument("--workers", type=int, default=None,
                        help="concurrent Ray tasks (default: the cluster's CPUs)")
    parser.add_argument("--address", default=None, help="Ray address (default: local)")
    parser.add_argument("--no-ray", action="store_true", help="run in this process")
    parser.add_argument("--best", type=int, default=10, help="equity curves kept")
    parser.add_argument("--rank-by", default="sharpe")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print the summary; return the exit status."""
    try:
        job = run(args.data, args.strategy, args.param, fill=args.fill,
                  commission=args.commission, cash=args.cash, size=args.size,
                  direction=args.direction, periods_per_year=args.periods_per_year,
                  out=args.out, workers=args.workers, address=args.address,
                  use_ray=not args.no_ray, best=args.best, rank_by=args.rank_by,
                  symbols=args.symbols.split(",") if args.symbols else None, progress=True)
    except MarketrayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    manifest = job.manifest
    print(json.dumps({"runs": manifest["runs"], "symbols": manifest["config"]["symbols"],
                      "grid_size": manifest["config"]["grid_size"],
                      "timings": manifest["timings"], "skipped": len(manifest["skipped"]),
                      "out": str(job.out)}, indent=2))
    with pl.Config(tbl_rows=20, tbl_cols=12):
        print(pl.DataFrame(manifest["best"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
