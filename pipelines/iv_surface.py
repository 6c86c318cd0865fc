"""Implied volatility, Greeks, ATM term structure and 25-delta skew from option data (Ray).

    python -m pipelines.iv_surface --recordings DIR --out SURFACE [--rate 0.04] [--dividend 0]
    python -m pipelines.iv_surface --source alpaca --underlyings AAPL,SPY \\
        --start 2025-06-02 --end 2025-06-06 --out SURFACE [--chain-days 45] [--moneyness 0.25]
    marketray research iv_surface ...

``DIR`` is a ``TickRecorder`` root (``<session>/{option_ticks,chains,ticks}/*.parquet``);
each recording session is one Ray task. ``DIR`` and ``SURFACE`` are paths or URIs
(``s3://bucket/recordings``). ``--source alpaca`` first fetches Alpaca's option and
stock bars into recording sessions under ``--inputs`` (a local path; default
``SURFACE/alpaca_input``; one per underlying and day, kept, so a rerun fetches only
missing days; :mod:`pipelines.iv_surface_alpaca`), then runs the same way.

Writes ``SURFACE/contracts.parquet`` (one row per contract and minute: spot, mid,
``implied_volatility``, delta, gamma, theta, vega, rho), ``SURFACE/expiries.parquet``
(per underlying, minute and expiration: ``atm_iv``, ``skew_25d``; conventions in
:mod:`market.research.iv_surface`) and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from core.errors import InvalidInput, NotFound
from core.storage import Storage, is_uri
from market.research.data import data_version
from market.research.iv_surface import contract_minutes, expiry_summary
from pipelines import _jobs

if TYPE_CHECKING:
    from core.settings import Settings


def _read(session: Storage, kind: str) -> pl.DataFrame:
    names = [n for n in session.listdir(kind) if n.endswith(".parquet")]
    frames = []
    for name in names:
        if session.is_local:
            frames.append(pl.read_parquet(session.local_path(kind, name)))
        else:
            with session.open_input(f"{kind}/{name}") as source:
                frames.append(pl.read_parquet(source))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def surface_session(session: str | Storage, rate: float, dividend: float
                    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """Compute one recording session's contract rows and expiry summary; one Ray task.

    ``session`` is the session's folder: a path, a URI or a Storage.
    """
    start = time.perf_counter()
    folder = session if isinstance(session, Storage) else Storage(session)
    option_ticks, chains, ticks = (_read(folder, k) for k in ("option_ticks", "chains",
                                                              "ticks"))
    read_s = time.perf_counter() - start
    if not (option_ticks.height and chains.height and ticks.height):
        return pl.DataFrame(), pl.DataFrame(), {"read_s": read_s, "compute_s": 0.0}
    start = time.perf_counter()
    rows = contract_minutes(option_ticks, chains, ticks, rate=rate, dividend=dividend)
    summary = expiry_summary(rows)
    return rows, summary, {"read_s": read_s, "compute_s": time.perf_counter() - start}


def run(recordings: str | Path | Storage, out: str | Path | Storage | None = None, *,
        rate: float = 0.04, dividend: float = 0.0, workers: int | None = None,
        address: str | None = None, use_ray: bool = True, source: Mapping[str, Any] | None = None
        ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Run the job; return (contracts, expiries, manifest), written under ``out`` if given.

    ``recordings`` and ``out`` are paths, URIs or Storages. ``source`` (what fetched the
    recordings, if a job did) goes into the manifest.
    """
    started = time.perf_counter()
    root = _jobs.output_storage(recordings, what="recordings")
    target = _jobs.output_storage(out) if out is not None else None
    # a folder starting with "." is a session still being written
    sessions = [root / name for name in root.listdir()
                if not name.startswith(".") and root.is_dir(f"{name}/option_ticks")]
    if not sessions:
        raise NotFound(f"no recording sessions with option ticks under {root}")
    if use_ray:
        import ray

        _jobs.ray_init(address, workers)
        task = ray.remote(num_cpus=1)(surface_session)
        outputs = ray.get([task.remote(s, rate, dividend) for s in sessions])
    else:
        outputs = [surface_session(s, rate, dividend) for s in sessions]
    contracts = pl.concat([o[0] for o in outputs if o[0].height], how="diagonal_relaxed") \
        if any(o[0].height for o in outputs) else pl.DataFrame()
    expiries = pl.concat([o[1] for o in outputs if o[1].height], how="diagonal_relaxed") \
        if any(o[1].height for o in outputs) else pl.DataFrame()
    compute_s = sum(o[2]["compute_s"] for o in outputs)
    manifest = _jobs.manifest(
        "iv_surface",
        {"recordings": str(root), "sessions": len(sessions), "rate": rate,
         "dividend": dividend, "ray": use_ray, "source": dict(source or {"kind": "recordings"})},
        data_version(root),
        rows=contracts.height,
        timings={"total_wall_s": time.perf_counter() - started,
                 "read_s_total": sum(o[2]["read_s"] for o in outputs),
                 "compute_s_total": compute_s,
                 "contract_minutes_per_compute_s": contracts.height / compute_s
                 if compute_s else None})
    _jobs.write_outputs(target, {"contracts": contracts, "expiries": expiries}, manifest)
    return contracts, expiries, manifest


def run_alpaca(out: str | Path | None, underlyings: Sequence[str], start: date | str,
               end: date | str, *, inputs: str | Path | None = None,
               settings: Settings | None = None, chain_days: int = 45,
               moneyness: float = 0.25, rate_limit: int = 200, rate: float = 0.04,
               dividend: float = 0.0, workers: int | None = None, address: str | None = None,
               use_ray: bool = True) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Fetch Alpaca's option and stock bars into ``inputs``, then run the job on them.

    ``inputs`` defaults to ``out/alpaca_input`` (needs ``out`` then); days already
    there are not fetched again. Credentials: ``settings`` or ``MARKETRAY_ALPACA_*``.
    """
    from pipelines.iv_surface_alpaca import fetch_inputs

    if inputs is None and out is None:
        raise InvalidInput("the Alpaca source needs out or inputs (where fetched days are kept)")
    if inputs is None and (isinstance(out, Storage) or is_uri(str(out))):
        raise InvalidInput("the Alpaca source keeps fetched days on a local path: give inputs "
                           "(--inputs) when out is a URI")
    folder = Path(inputs) if inputs is not None else Path(out or ".") / "alpaca_input"
    started = time.perf_counter()
    fetched = fetch_inputs(folder, list(underlyings), start, end, settings=settings,
                           chain_days=chain_days, moneyness=moneyness, rate_limit=rate_limit)
    source = {"kind": "alpaca", "underlyings": sorted(underlyings), "start": str(start),
              "end": str(end), "chain_days": chain_days, "moneyness": moneyness,
              "rate_limit_per_minute": rate_limit,
              "price": "option bar close; spot: the underlying's bar close, same minute",
              "fetch": fetched, "fetch_wall_s": time.perf_counter() - started}
    return run(folder, out, rate=rate, dividend=dividend, workers=workers, address=address,
               use_ray=use_ray, source=source)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options (shared with ``marketray research iv_surface``)."""
    parser.add_argument("--source", choices=("recordings", "alpaca"), default="recordings")
    parser.add_argument("--recordings", default=None,
                        help="TickRecorder root folder: a path or a URI")
    parser.add_argument("--underlyings", default=None, help="alpaca: comma-separated")
    parser.add_argument("--start", default=None, help="alpaca: first day (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="alpaca: last day (YYYY-MM-DD)")
    parser.add_argument("--inputs", default=None,
                        help="alpaca: where fetched days are kept (default OUT/alpaca_input)")
    parser.add_argument("--chain-days", type=int, default=45,
                        help="alpaca: expirations up to this many days ahead")
    parser.add_argument("--moneyness", type=float, default=0.25,
                        help="alpaca: strikes within this fraction of the day's price range")
    parser.add_argument("--rate-limit", type=int, default=200, help="alpaca: requests/minute")
    parser.add_argument("--out", required=True, help="output directory: a path or a URI")
    parser.add_argument("--rate", type=float, default=0.04, help="continuous, annual")
    parser.add_argument("--dividend", type=float, default=0.0, help="continuous, annual")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--no-ray", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job from parsed options; print its summary."""
    common = {"rate": args.rate, "dividend": args.dividend, "workers": args.workers,
              "address": args.address, "use_ray": not args.no_ray}
    if args.source == "alpaca":
        if not (args.underlyings and args.start and args.end):
            print("error: --source alpaca needs --underlyings, --start and --end",
                  file=sys.stderr)
            return 2

        def job() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
            return run_alpaca(args.out, args.underlyings.split(","), args.start, args.end,
                              inputs=args.inputs, chain_days=args.chain_days,
                              moneyness=args.moneyness, rate_limit=args.rate_limit, **common)
    elif args.recordings:
        def job() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
            return run(args.recordings, args.out, **common)
    else:
        print("error: --recordings is needed (or --source alpaca)", file=sys.stderr)
        return 2

    def summary(result: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]) -> dict[str, Any]:
        contracts, expiries, manifest = result
        fetched = manifest["config"]["source"].get("fetch")
        return {"contract_minutes": contracts.height, "expiry_rows": expiries.height,
                "timings": manifest["timings"],
                **({"fetch": fetched} if fetched else {})}

    return _jobs.run_and_print(job, summary)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the job."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.iv_surface", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
