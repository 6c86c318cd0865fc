"""The walk-forward job in-process, on a simulated lake."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines.backfill import run as backfill
from pipelines.walkforward import run as walkforward


def test_walkforward_job_writes_splits_and_stitched_equity(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    backfill(lake, universe=2, sessions=4, seed=1, use_ray=False)
    splits, equity, manifest = walkforward(
        lake, "sma_cross", ["fast=5:10:5", "slow=20:40:20"], train=780, test=390,
        commission=0.001, out=tmp_path / "wf", use_ray=False)
    assert splits.height == 2 * 2  # (4 - 2) sessions of 390 bars out of sample per symbol
    assert equity.height == 2 * 780
    assert set(splits["fast"].to_list()) <= {5.0, 10.0}
    assert pl.read_parquet(tmp_path / "wf" / "splits.parquet").equals(splits)
    assert manifest["skipped"] == []
