"""Implied volatility, Greeks, ATM term structure and 25-delta skew from recordings (Ray).

    python -m pipelines.iv_surface --recordings DIR --out SURFACE [--rate 0.04] [--dividend 0]
    marketray research iv_surface ...

``DIR`` is a ``TickRecorder`` root (``<session>/{option_ticks,chains,ticks}/*.parquet``);
each recording session is one Ray task. Writes ``SURFACE/contracts.parquet`` (one row per
contract and minute: spot, mid, ``implied_volatility``, delta, gamma, theta, vega, rho),
``SURFACE/expiries.parquet`` (per underlying, minute and expiration: ``atm_iv``,
``skew_25d``; conventions in :mod:`market.research.iv_surface`) and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import MarketrayError, NotFound
from market.research.data import data_version
from market.research.iv_surface import contract_minutes, expiry_summary
from pipelines import _jobs


def _read(session: Path, kind: str) -> pl.DataFrame:
    files = sorted((session / kind).glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files \
        else pl.DataFrame()


def surface_session(session: str, rate: float, dividend: float
                    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """Compute one recording session's contract rows and expiry summary; one Ray task."""
    start = time.perf_counter()
    folder = Path(session)
    option_ticks, chains, ticks = (_read(folder, k) for k in ("option_ticks", "chains",
                                                              "ticks"))
    read_s = time.perf_counter() - start
    if not (option_ticks.height and chains.height and ticks.height):
        return pl.DataFrame(), pl.DataFrame(), {"read_s": read_s, "compute_s": 0.0}
    start = time.perf_counter()
    rows = contract_minutes(option_ticks, chains, ticks, rate=rate, dividend=dividend)
    summary = expiry_summary(rows)
    return rows, summary, {"read_s": read_s, "compute_s": time.perf_counter() - start}


def run(recordings: str | Path, out: str | Path | None = None, *, rate: float = 0.04,
        dividend: float = 0.0, workers: int | None = None, address: str | None = None,
        use_ray: bool = True) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Run the job; return (contracts, expiries, manifest), written under ``out`` if given."""
    started = time.perf_counter()
    root = Path(recordings)
    sessions = sorted(p for p in root.iterdir() if (p / "option_ticks").is_dir()) \
        if root.is_dir() else []
    if not sessions:
        raise NotFound(f"no recording sessions with option ticks under {root}")
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        task = ray.remote(num_cpus=1)(surface_session)
        outputs = ray.get([task.remote(str(s), rate, dividend) for s in sessions])
    else:
        outputs = [surface_session(str(s), rate, dividend) for s in sessions]
    contracts = pl.concat([o[0] for o in outputs if o[0].height], how="diagonal_relaxed") \
        if any(o[0].height for o in outputs) else pl.DataFrame()
    expiries = pl.concat([o[1] for o in outputs if o[1].height], how="diagonal_relaxed") \
        if any(o[1].height for o in outputs) else pl.DataFrame()
    compute_s = sum(o[2]["compute_s"] for o in outputs)
    manifest: dict[str, Any] = {
        "job": "iv_surface",
        "config": {"recordings": str(root), "sessions": len(sessions), "rate": rate,
                   "dividend": dividend, "ray": use_ray},
        "data_version": data_version(root),
        "libraries": _jobs.library_versions(), "seed": None,
        "rows": contracts.height,
        "timings": {"total_wall_s": time.perf_counter() - started,
                    "read_s_total": sum(o[2]["read_s"] for o in outputs),
                    "compute_s_total": compute_s,
                    "contract_minutes_per_compute_s": contracts.height / compute_s
                    if compute_s else None},
    }
    if out is not None:
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        contracts.write_parquet(target / "contracts.parquet")
        expiries.write_parquet(target / "expiries.parquet")
        _jobs.write_manifest(target, manifest)
    return contracts, expiries, manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research iv_surface``)."""
    parser.add_argument("--recordings", required=True, help="TickRecorder root folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate", type=float, default=0.04, help="continuous, annual")
    parser.add_argument("--dividend", type=float, default=0.0, help="continuous, annual")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--no-ray", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print its summary."""
    try:
        contracts, expiries, manifest = run(
            args.recordings, args.out, rate=args.rate, dividend=args.dividend,
            workers=args.workers, address=args.address, use_ray=not args.no_ray)
    except MarketrayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps({"contract_minutes": contracts.height, "expiry_rows": expiries.height,
                      "timings": manifest["timings"]}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.iv_surface", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
