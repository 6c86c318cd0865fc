"""Backfill (deterministic, resumable) and walk-forward jobs in-process."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from market.research.data import data_version, list_symbols, load_bars
from pipelines.backfill import run as backfill
from pipelines.walkforward import run as walkforward


def test_backfill_is_deterministic_and_resumable(tmp_path: Path) -> None:
    first = backfill(tmp_path / "a", universe=3, sessions=2, seed=3, use_ray=False)
    again = backfill(tmp_path / "a", universe=3, sessions=2, seed=3, use_ray=False)
    other = backfill(tmp_path / "b", universe=3, sessions=2, seed=3, use_ray=False)
    assert first["bars_written"] == 3 * 2 * 390
    assert again["bars_written"] == 0  # every file already there: nothing refetched
    assert again["chunks_skipped"] == 1
    assert list_symbols(tmp_path / "a") == ["S0000", "S0001", "S0002"]
    a = load_bars(tmp_path / "a", ["S0001"])[0]
    b = load_bars(tmp_path / "b", ["S0001"])[0]
    assert (a.bars.close == b.bars.close).all()
    assert (a.bars.high >= a.bars.close).all()
    assert (a.bars.low <= a.bars.open).all()
    assert first["data_version"] == data_version(tmp_path / "a")
    assert other["seed"] == 3


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
