"""``marketray research <job> ...``: the research jobs of ``pipelines`` from the CLI."""

from __future__ import annotations

import argparse
import importlib

JOBS = {
    "backfill": ("pipelines.backfill", "build the history lake (simulator or Alpaca)"),
    "features": ("pipelines.features", "indicator bundle and patterns over the lake"),
    "backtest": ("pipelines.backtest", "strategy backtests and parameter sweeps"),
    "walkforward": ("pipelines.walkforward", "rolling in-sample choice, out-of-sample test"),
    "iv_surface": ("pipelines.iv_surface", "IVs, ATM term structure, 25-delta skew"),
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(JOBS[args.job][0])
    code: int = module.run_from_args(args)
    return code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``research`` and one sub-subcommand per job (the job's own options)."""
    research = subparsers.add_parser("research", help="research jobs (Ray): " + ", ".join(JOBS))
    jobs = research.add_subparsers(dest="job", required=True)
    for name, (module_name, help_text) in JOBS.items():
        job = jobs.add_parser(name, help=help_text)
        importlib.import_module(module_name).add_arguments(job)
        job.set_defaults(func=_run)
