"""The walk-forward job in-process, on a simulated lake at a path, a file:// URI or an object
store (pyarrow's in-memory filesystem)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from market.research.data import data_version
from pipelines.backfill import run as backfill
from pipelines.walkforward import run as walkforward

PARAMS = ["fast=5:10:5", "slow=20:40:20"]


def test_walkforward_job_writes_splits_and_stitched_equity(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    backfill(lake, universe=2, sessions=4, seed=1, use_ray=False)
    splits, equity, manifest = walkforward(
        lake, "sma_cross", PARAMS, train=780, test=390,
        commission=0.001, out=tmp_path / "wf", use_ray=False)
    assert splits.height == 2 * 2  # (4 - 2) sessions of 390 bars out of sample per symbol
    assert equity.height == 2 * 780
    assert set(splits["fast"].to_list()) <= {5.0, 10.0}
    assert pl.read_parquet(tmp_path / "wf" / "splits.parquet").equals(splits)
    assert manifest["skipped"] == []


@pytest.mark.parametrize("kind", ["file_uri", "memory"])
def test_a_lake_and_outputs_at_a_uri_or_in_an_object_store_give_the_local_run(
        tmp_path: Path, kind: str) -> None:
    backfill(tmp_path / "lake", universe=2, sessions=4, seed=1, use_ray=False)
    local = walkforward(tmp_path / "lake", "sma_cross", PARAMS, train=780, test=390,
                        commission=0.001, use_ray=False)
    if kind == "file_uri":
        lake: str | Storage = f"file://{tmp_path}/lake"
        out = Storage(f"file://{tmp_path}/wf")
    else:
        bucket = Storage("bucket", filesystem=pafs._MockFileSystem())
        backfill(bucket / "lake", universe=2, sessions=4, seed=1, use_ray=False)
        lake, out = bucket / "lake", bucket / "runs" / "wf"

    splits, equity, manifest = walkforward(
        lake, "sma_cross", PARAMS, train=780, test=390, commission=0.001,
        out=out if kind == "memory" else out.location, use_ray=False)

    assert splits.height == 4
    assert splits.equals(local[0])
    assert equity.equals(local[1])
    with out.open_input("splits.parquet") as written:
        assert pl.read_parquet(written).equals(splits)
    with out.open_input("equity.parquet") as written:
        assert pl.read_parquet(written).equals(equity)
    assert json.loads(out.read_text("manifest.json"))["data_version"] == data_version(lake)
    assert manifest["data_version"] == data_version(lake)
