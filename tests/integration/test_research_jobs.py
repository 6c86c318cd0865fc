"""Research jobs on a real Ray cluster (one per module): same results as in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import ray

from pipelines import _jobs
from pipelines.backtest import run
from serve.cli import main as marketray

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": _jobs.WORKER_ENV})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five symbols in the history store's date=/symbol= layout, two days of minute bars."""
    root = tmp_path_factory.mktemp("lake")
    rng = np.random.default_rng(5)
    for symbol in ("AAA", "BBB", "CCC", "DDD", "EEE"):
        price = 50.0
        for day, start_ns in (("2025-01-02", 1_735_828_200 * 10**9),
                              ("2025-01-03", 1_735_914_600 * 10**9)):
            close = price * np.exp(np.cumsum(rng.normal(0, 0.002, 390)))
            price = float(close[-1])
            folder = root / f"date={day}" / f"symbol={symbol}"
            folder.mkdir(parents=True)
            pl.DataFrame({"ts_ns": start_ns + np.arange(390, dtype=np.int64) * 60 * 10**9,
                          "open": close, "high": close, "low": close, "close": close,
                          "volume": np.ones(390)}).write_parquet(folder / "part-0.parquet")
    return root


def test_backtest_on_ray_equals_in_process(cluster: None, lake: Path, tmp_path: Path) -> None:
    params = ["fast=5:20:5", "slow=30:50:10"]
    local = run(lake, "sma_cross", params, commission=0.0005, use_ray=False)
    distributed = run(lake, "sma_cross", params, commission=0.0005, workers=2,
                      symbols_per_task=2, out=tmp_path / "ray")
    assert distributed.manifest["config"]["tasks"] >= 3  # chunks, not one task per run
    assert distributed.summary.height == 5 * 12
    assert distributed.summary.equals(local.summary)
    assert distributed.trades.equals(local.trades)
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["runs"] == 60


def test_research_cli_writes_the_same_summary(cluster: None, lake: Path, tmp_path: Path) -> None:
    args = ["research", "backtest", "--data", str(lake), "--param", "fast=5:10:5",
            "--param", "slow=30", "--fill", "next_open", "--size", "whole"]
    assert marketray([*args, "--out", str(tmp_path / "a"), "--workers", "2"]) == 0
    assert marketray([*args, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    first = pl.read_parquet(tmp_path / "a" / "summary.parquet")
    assert first.height == 10
    assert first.equals(pl.read_parquet(tmp_path / "b" / "summary.parquet"))
