"""The indicator bundle and candlestick patterns over the lake → a features dataset (Ray).

    python -m pipelines.features --data LAKE --out FEATURES [--workers 2] [--symbols A,B]
    marketray research features --data LAKE --out FEATURES

Each Ray task reads a chunk of symbols, computes :func:`market.research.features.features`
(the values the live shards' ``IndicatorBank`` holds after each bar) and writes
``FEATURES/symbol=<S>/year=<Y>/features.parquet`` (the lake's partitioning).
Writes ``FEATURES/manifest.json``. ``LAKE`` and ``FEATURES`` are paths or URIs
(``s3://bucket/lake``) every node can reach; each file appears whole.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import InvalidInput, MarketrayError
from core.storage import Storage
from market.research import data as research_data
from market.research.features import features
from pipelines import _jobs


@dataclass
class ChunkDone:
    """One chunk's outcome."""

    symbols: int
    rows: int
    seconds: dict[str, float]
    peak_rss_bytes: int


def features_chunk(data: str | Storage, out: str | Storage, symbols: Sequence[str]
                   ) -> ChunkDone:
    """Compute and write the features of ``symbols``; the body of one Ray task."""
    target = _jobs.output_storage(out)
    start = time.perf_counter()
    loaded = research_data.load_bars(data, symbols)
    read_s = time.perf_counter() - start
    compute_s = write_s = 0.0
    rows = 0
    for item in loaded:
        start = time.perf_counter()
        frame = features(item).with_columns(pl.col("timestamp").dt.year().alias("_year"))
        compute_s += time.perf_counter() - start
        start = time.perf_counter()
        for (year,), part in frame.partition_by("_year", as_dict=True).items():
            _jobs.write_table(target, f"symbol={item.symbol}/year={year}/features.parquet",
                              part.drop("_year"))
        write_s += time.perf_counter() - start
        rows += frame.height
    return ChunkDone(len(loaded), rows, {"read_s": read_s, "compute_s": compute_s,
                                         "write_s": write_s}, _jobs.peak_rss_bytes())


def run(data: str | Path | Storage, out: str | Path | Storage, *,
        symbols: Sequence[str] | None = None, workers: int | None = None,
        address: str | None = None, use_ray: bool = True, symbols_per_task: int = 10,
        progress: bool = False) -> dict[str, Any]:
    """Write the features of every (or the given) symbol; return the manifest.

    ``data`` and ``out`` are paths, URIs or Storages; Ray tasks get them as locations.
    """
    started = time.perf_counter()
    data_path = _jobs.input_location(data)
    root = _jobs.output_storage(out)
    universe = list(symbols) if symbols else research_data.list_symbols(data_path)
    if not universe:
        raise InvalidInput(f"no symbols in {data_path}")
    root.makedirs()
    chunks = [universe[i:i + symbols_per_task]
              for i in range(0, len(universe), symbols_per_task)]
    bar = _jobs.Progress(len(universe), enabled=progress)
    done: list[ChunkDone] = []
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        workers = workers or _jobs.cluster_cpus()
        task = ray.remote(num_cpus=1)(features_chunk)
        pending = [task.remote(data_path, root, c) for c in chunks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            result: ChunkDone = ray.get(ready[0])
            done.append(result)
            bar.advance(result.symbols, result.rows)
    else:
        for chunk in chunks:
            result = features_chunk(data_path, root, chunk)
            done.append(result)
            bar.advance(result.symbols, result.rows)
    bar.close()
    wall = time.perf_counter() - started
    rows = sum(d.rows for d in done)
    manifest: dict[str, Any] = {
        "job": "features",
        "config": {"data": str(data_path), "symbols": len(universe), "workers": workers,
                   "ray": use_ray, "symbols_per_task": symbols_per_task},
        "data_version": research_data.data_version(data_path),
        "libraries": _jobs.library_versions(),
        "seed": None,
        "rows": rows,
        "timings": {"total_wall_s": wall, "rows_per_s": rows / wall if wall else math.nan,
                    **{k: sum(d.seconds[k] for d in done)
                       for k in ("read_s", "compute_s", "write_s")}},
        "peak_rss_bytes_per_task_max": max(d.peak_rss_bytes for d in done),
    }
    _jobs.write_manifest(root, manifest)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research features``)."""
    parser.add_argument("--data", required=True, help="history lake or Parquet/CSV of bars")
    parser.add_argument("--out", required=True)
    parser.add_argument("--symbols", default=None, help="comma-separated subset")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--no-ray", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print its summary."""
    try:
        manifest = run(args.data, args.out, symbols=args.symbols.split(",") if args.symbols
                       else None, workers=args.workers, address=args.address,
                       use_ray=not args.no_ray, progress=True)
    except MarketrayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps({"rows": manifest["rows"], "timings": manifest["timings"]}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
