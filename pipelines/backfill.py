"""Build the research history lake from the simulator (Ray tasks) or Alpaca's history.

    python -m pipelines.backfill --source sim --universe 500 --sessions 252 \\
        --end 2025-12-31 --seed 7 --out LAKE [--workers 2]
    python -m pipelines.backfill --source alpaca --symbols AAPL,MSFT \\
        --start 2025-01-02 --end 2025-06-30 --out LAKE [--feed iex] [--adjustment raw]
    marketray research backfill ...

``sim``: symbols are simulated in fixed chunks of ``CHUNK_SYMBOLS`` (each chunk shares
one market factor and draws from ``[seed, chunk]``), so the lake is the same whatever
the number of workers. Resumable: a chunk whose symbol-year files all exist is skipped
(files are renamed into place only when complete).

``alpaca``: 1-minute bars from Alpaca's historical API (alpaca-py, credentials from
``MARKETRAY_ALPACA_*``), fetched by the driver's threads behind one rate limiter
(:mod:`pipelines.backfill_alpaca`). Writes ``LAKE/manifest.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.storage import Storage
from market.research import lake
from pipelines import _jobs, backfill_alpaca

SIM_END = "2025-12-31"


@dataclass
class ChunkDone:
    """One chunk's outcome."""

    chunk: int
    bars: int
    skipped: bool
    seconds: float
    peak_rss_bytes: int


def simulate_chunk(out: Storage, symbols: Sequence[str], days: Sequence[date], seed: int,
                   chunk: int) -> ChunkDone:
    """Simulate and write one chunk of symbols unless its files exist; one Ray task."""
    start = time.perf_counter()
    root = out
    years = sorted({d.year for d in days})
    if all(lake.bars_exist(root, s, y) for s in symbols for y in years):
        return ChunkDone(chunk, 0, True, 0.0, _jobs.peak_rss_bytes())
    frame = lake.simulate_bars(symbols, days, seed, chunk)
    lake.write_bars(root, frame)
    return ChunkDone(chunk, frame.height, False, time.perf_counter() - start,
                     _jobs.peak_rss_bytes())


def run(out: str | Path | Storage, *, universe: int | Sequence[str] = 500,
        sessions: int = 252, end: date | str = SIM_END, seed: int = 7,
        workers: int | None = None, address: str | None = None, use_ray: bool = True,
        progress: bool = False) -> dict[str, Any]:
    """Write the simulated lake under ``out``; return the manifest (also written there).

    ``out``: a path, a URI (``s3://...``, read by every worker) or a
    :class:`core.storage.Storage`.
    """
    started = time.perf_counter()
    end_day = date.fromisoformat(end) if isinstance(end, str) else end
    symbols = lake.universe(universe) if isinstance(universe, int) else list(universe)
    if not symbols or sessions < 1:
        raise InvalidInput("need at least one symbol and one session")
    days = lake.sessions_ending(end_day, sessions)
    root = lake.lake_storage(out)
    root.makedirs()
    size = lake.CHUNK_SYMBOLS
    chunks = [(i, symbols[i * size:(i + 1) * size])
              for i in range(math.ceil(len(symbols) / size))]
    bar = _jobs.Progress(len(symbols), enabled=progress)
    done: list[ChunkDone] = []
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        workers = workers or _jobs.cluster_cpus()
        task = ray.remote(num_cpus=1)(simulate_chunk)
        pending = {task.remote(root, syms, days, seed, i): len(syms) for i, syms in chunks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            count = pending.pop(ready[0])
            result: ChunkDone = ray.get(ready[0])
            done.append(result)
            bar.advance(count, result.bars)
    else:
        for i, syms in chunks:
            result = simulate_chunk(root, syms, days, seed, i)
            done.append(result)
            bar.advance(len(syms), result.bars)
    bar.close()
    manifest: dict[str, Any] = {
        "job": "backfill",
        "config": {"source": "sim", "symbols": len(symbols), "sessions": sessions,
                   "first_day": days[0].isoformat(), "last_day": days[-1].isoformat(),
                   "chunk_symbols": size, "workers": workers, "ray": use_ray},
        "seed": seed,
        "libraries": _jobs.library_versions(),
        "bars_written": sum(d.bars for d in done),
        "chunks_skipped": sum(d.skipped for d in done),
        "timings": {"total_wall_s": time.perf_counter() - started,
                    "simulate_write_s_total": sum(d.seconds for d in done)},
        "peak_rss_bytes_max": max(d.peak_rss_bytes for d in done),
    }
    manifest["data_version"] = _jobs.storage_version(root)
    _jobs.write_manifest(root, manifest)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research backfill``)."""
    parser.add_argument("--source", choices=("sim", "alpaca"), default="sim")
    parser.add_argument("--universe", type=int, default=500, help="number of symbols (sim)")
    parser.add_argument("--symbols", default=None, help="comma-separated names instead")
    parser.add_argument("--sessions", type=int, default=252, help="sim: sessions up to --end")
    parser.add_argument("--start", default=None, help="alpaca: first day (YYYY-MM-DD)")
    parser.add_argument("--end", default=None,
                        help=f"last session (YYYY-MM-DD; sim: {SIM_END}, alpaca: today)")
    backfill_alpaca.add_arguments(parser)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True, help="lake directory")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--no-ray", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print the manifest's summary."""
    if args.source == "alpaca":
        return backfill_alpaca.run_from_args(args)
    return _jobs.run_and_print(
        lambda: run(args.out, universe=args.symbols.split(",") if args.symbols
                    else args.universe, sessions=args.sessions, end=args.end or SIM_END,
                    seed=args.seed, workers=args.workers, address=args.address,
                    use_ray=not args.no_ray, progress=True),
        lambda manifest: {k: manifest[k] for k in ("bars_written", "chunks_skipped",
                                                   "timings", "data_version")})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
