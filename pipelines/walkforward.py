"""Walk-forward optimisation of a strategy's grid over many symbols (Ray tasks).

    python -m pipelines.walkforward --data LAKE --strategy sma_cross \\
        --param fast=5:50:5 --param slow=60:150:10 --train 19500 --test 3900 --out DIR
    marketray research walkforward ...

Per symbol (:func:`market.research.walkforward.walk_forward`): choose the best
parameters by ``--rank-by`` on each ``--train``-bar window, trade them on the next
``--test`` bars, chain the out-of-sample pieces. Writes ``DIR/splits.parquet`` (symbol,
split, window times, the chosen parameters, in- and out-of-sample statistics with
``is_``/``oos_`` prefixes), ``DIR/equity.parquet`` (the stitched out-of-sample equity)
and ``DIR/manifest.json``. Fill, commission, cash, size and direction as ``backtest``;
``LAKE`` and ``DIR`` are paths or URIs (``s3://bucket/lake``), as there.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import InvalidInput
from core.storage import Storage
from market.research import data as research_data
from market.research.backtest import BacktestConfig
from market.research.grid import build_grid
from market.research.stats import STAT_NAMES
from market.research.strategies import get
from market.research.walkforward import walk_forward
from pipelines import _jobs


def walkforward_chunk(data: str | Storage, symbols: Sequence[str], strategy: str,
                      grid: Sequence[Mapping[str, float]], config: Mapping[str, Any],
                      train: int, test: int, rank_by: str
                      ) -> tuple[list[dict[str, Any]], list[pl.DataFrame], list[str]]:
    """Walk forward on each of ``symbols``; the body of one Ray task."""
    rows: list[dict[str, Any]] = []
    curves: list[pl.DataFrame] = []
    skipped: list[str] = []
    settings = dict(config)
    fixed = settings.pop("periods_per_year", None)
    for item in research_data.load_bars(data, symbols):
        per_year = fixed or research_data.periods_per_year(item.timestamp_ns)
        try:
            result = walk_forward(item.bars, get(strategy), grid,
                                  BacktestConfig(**settings, periods_per_year=per_year),
                                  train=train, test=test, rank_by=rank_by)
        except InvalidInput as exc:
            skipped.append(f"{item.symbol}: {exc.message}")
            continue
        times = item.timestamp_ns
        for k, split in enumerate(result.splits):
            rows.append({
                "symbol": item.symbol, "split": k,
                "in_sample_start": times[split.in_sample[0]],
                "out_of_sample_start": times[split.out_of_sample[0]],
                "out_of_sample_end": times[split.out_of_sample[1] - 1],
                **dict(split.params),
                **{f"is_{n}": float(v) for n, v in zip(STAT_NAMES, split.in_sample_stats,
                                                       strict=True)},
                **{f"oos_{n}": float(v) for n, v in zip(STAT_NAMES, split.out_of_sample_stats,
                                                        strict=True)},
            })
        stop = result.start_bar + len(result.equity)
        curves.append(pl.DataFrame({
            "symbol": [item.symbol] * len(result.equity),
            "timestamp": pl.Series(times[result.start_bar:stop]).cast(
                pl.Datetime("ns", "UTC")),
            "equity": result.equity}))
    return rows, curves, skipped


def run(data: str | Path | Storage, strategy: str,
        params: Sequence[str] | Mapping[str, Sequence[float]], *, train: int, test: int,
        rank_by: str = "sharpe", fill: str = "close",
        commission: float = 0.0, cash: float = 10_000.0, size: str = "fractional",
        direction: str = "long", periods_per_year: float | None = None,
        symbols: Sequence[str] | None = None, out: str | Path | Storage | None = None,
        workers: int | None = None, address: str | None = None, use_ray: bool = True,
        symbols_per_task: int = 5) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Run the job; return (splits, equity, manifest), written under ``out`` if given."""
    started = time.perf_counter()
    grid = build_grid(get(strategy), params)
    config = BacktestConfig(fill=fill, commission=commission, cash=cash,  # type: ignore[arg-type]
                            size=size, direction=direction)  # type: ignore[arg-type]
    settings = {"fill": config.fill, "commission": config.commission, "cash": config.cash,
                "size": config.size, "direction": config.direction,
                "periods_per_year": periods_per_year}
    data_path = _jobs.input_location(data)
    target = _jobs.output_storage(out) if out is not None else None
    universe = list(symbols) if symbols else research_data.list_symbols(data_path)
    chunks = [universe[i:i + symbols_per_task]
              for i in range(0, len(universe), symbols_per_task)]
    args = (strategy, grid, settings, train, test, rank_by)
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        task = ray.remote(num_cpus=1)(walkforward_chunk)
        outputs = ray.get([task.remote(data_path, c, *args) for c in chunks])
    else:
        outputs = [walkforward_chunk(data_path, c, *args) for c in chunks]
    rows = [r for o in outputs for r in o[0]]
    splits = pl.DataFrame(rows).with_columns(
        pl.col("in_sample_start", "out_of_sample_start", "out_of_sample_end")
        .cast(pl.Datetime("ns", "UTC"))) if rows else pl.DataFrame()
    curves = [c for o in outputs for c in o[1]]
    equity = pl.concat(curves) if curves else pl.DataFrame()
    manifest = _jobs.manifest(
        "walkforward",
        {"data": str(data_path), "strategy": strategy, "grid_size": len(grid),
         "train_bars": train, "test_bars": test, "rank_by": rank_by, **settings,
         "symbols": len(universe), "ray": use_ray},
        research_data.data_version(data_path),
        skipped=[s for o in outputs for s in o[2]],
        timings={"total_wall_s": time.perf_counter() - started})
    _jobs.write_outputs(target, {"splits": splits, "equity": equity}, manifest)
    return splits, equity, manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research walkforward``)."""
    parser.add_argument("--data", required=True, help="history lake: a path or a URI")
    parser.add_argument("--strategy", default="sma_cross")
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--train", type=int, required=True, help="in-sample bars per split")
    parser.add_argument("--test", type=int, required=True, help="out-of-sample bars per split")
    parser.add_argument("--rank-by", default="sharpe")
    parser.add_argument("--fill", choices=("close", "next_open"), default="close")
    parser.add_argument("--commission", type=float, default=0.0)
    parser.add_argument("--cash", type=float, default=10_000.0)
    parser.add_argument("--size", choices=("fractional", "whole"), default="fractional")
    parser.add_argument("--direction", choices=("long", "long_short"), default="long")
    parser.add_argument("--symbols", default=None)
    parser.add_argument("--out", required=True, help="output directory: a path or a URI")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--no-ray", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print its summary."""
    return _jobs.run_and_print(
        lambda: run(args.data, args.strategy, args.param, train=args.train, test=args.test,
                    rank_by=args.rank_by, fill=args.fill, commission=args.commission,
                    cash=args.cash, size=args.size, direction=args.direction,
                    symbols=args.symbols.split(",") if args.symbols else None, out=args.out,
                    workers=args.workers, address=args.address, use_ray=not args.no_ray),
        lambda result: {"splits": result[0].height, "skipped": result[2]["skipped"],
                        "timings": result[2]["timings"]})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.walkforward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
