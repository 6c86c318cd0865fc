"""The backtest job in-process (no Ray): outputs, determinism, agreement with the engine, and
the same results with data and outputs at a file:// URI or in an object store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pytest

from core.errors import InvalidInput
from core.storage import Storage
from market.research.backtest import BacktestConfig, run_grid
from market.research.data import data_version, load_bars, periods_per_year
from market.research.strategies import get
from pipelines.backtest import main, run

SUMMARY_COLUMNS = ["symbol", "fast", "slow", "total_return", "cagr", "volatility", "sharpe",
                   "sortino", "max_drawdown", "max_drawdown_bars", "trades", "win_rate",
                   "profit_factor", "exposure", "final_equity"]
TRADE_COLUMNS = ["symbol", "fast", "slow", "entry_time", "entry_price", "exit_time",
                 "exit_price", "size", "pnl"]


@pytest.fixture(scope="module")
def bars_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(11)
    frames = []
    for symbol in ("AAA", "BBB", "CCC"):
        n = 1500
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
        open_ = close * np.exp(rng.normal(0, 0.001, n))
        start = np.datetime64("2025-01-02T14:30", "ns")
        frames.append(pl.DataFrame({
            "symbol": [symbol] * n,
            "timestamp": start + np.arange(n) * np.timedelta64(1, "m"),
            "open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
            "close": close, "volume": np.ones(n)}))
    path = tmp_path_factory.mktemp("bars") / "bars.parquet"
    pl.concat(frames).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC")
                                   ).write_parquet(path)
    return path


def test_job_writes_contract_outputs_and_reruns_identically(bars_file: Path,
                                                            tmp_path: Path) -> None:
    params = ["fast=5:15:5", "slow=20:40:10"]
    first = run(bars_file, "sma_cross", params, commission=0.001, out=tmp_path / "a",
                use_ray=False, best=3)
    second = run(bars_file, "sma_cross", params, commission=0.001, out=tmp_path / "b",
                 use_ray=False, best=3)
    summary = pl.read_parquet(tmp_path / "a" / "summary.parquet")
    assert summary.columns == SUMMARY_COLUMNS
    assert summary.height == 3 * 9
    assert summary.equals(pl.read_parquet(tmp_path / "b" / "summary.parquet"))
    assert first.summary.equals(second.summary)
    trades = pl.read_parquet(tmp_path / "a" / "trades.parquet")
    assert trades.columns == TRADE_COLUMNS
    assert trades.equals(second.trades)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["data_version"] == second.manifest["data_version"]
    assert {"compile_s_max_per_worker", "compute_s_total", "read_s_total"} <= set(
        manifest["timings"])
    assert manifest["libraries"]["numba"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("<svg") == 2  # equity + drawdown, and the fast × slow heatmap
    assert pl.read_parquet(tmp_path / "a" / "equity.parquet")["rank"].n_unique() == 3


def test_job_rows_equal_the_engine_called_directly(bars_file: Path) -> None:
    job = run(bars_file, "sma_cross", {"fast": [5], "slow": [30]}, fill="next_open",
              size="whole", direction="long_short", use_ray=False)
    (item,) = load_bars(bars_file, ["BBB"])
    config = BacktestConfig(fill="next_open", size="whole", direction="long_short",
                            periods_per_year=periods_per_year(item.timestamp_ns))
    direct = run_grid(item.bars, get("sma_cross"), [{"fast": 5, "slow": 30}], config)[0]
    row = job.summary.filter(pl.col("symbol") == "BBB").row(0, named=True)
    assert row["final_equity"] == direct.stat("final_equity")
    assert row["sharpe"] == direct.stat("sharpe")
    mine = job.trades.filter(pl.col("symbol") == "BBB")
    assert mine["entry_price"].to_list() == direct.trades[:, 1].tolist()
    assert mine["pnl"].to_list() == direct.trades[:, 5].tolist()


def test_cli_reports_bad_parameters_with_exit_status(bars_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--data", str(bars_file), "--param", "speed=1:2:1", "--out",
                   str(tmp_path), "--no-ray"])
    assert status == 2
    assert "no parameter" in capsys.readouterr().err
    with pytest.raises(InvalidInput, match="unknown strategy"):
        run(bars_file, "nope", [], use_ray=False)


@pytest.mark.parametrize("kind", ["file_uri", "memory"])
def test_data_and_outputs_at_a_uri_or_in_an_object_store_give_the_local_run(
        bars_file: Path, tmp_path: Path, kind: str) -> None:
    params = ["fast=5:15:5", "slow=20:40:10"]
    local = run(bars_file, "sma_cross", params, commission=0.001, out=tmp_path / "local",
                use_ray=False, best=3)
    if kind == "file_uri":
        data: str | Storage = f"file://{bars_file}"
        out = Storage(f"file://{tmp_path}/remote")
    else:
        bucket = Storage("bucket", filesystem=pafs._MockFileSystem())
        bucket.write_bytes("lake/bars.parquet", bars_file.read_bytes())
        data, out = bucket / "lake" / "bars.parquet", bucket / "runs" / "x"

    there = run(data, "sma_cross", params, commission=0.001,
                out=out if kind == "memory" else out.location, use_ray=False, best=3)

    assert there.summary.equals(local.summary)
    assert there.trades.equals(local.trades)
    assert there.equity.equals(local.equity)
    assert out.files() == ["equity.parquet", "manifest.json", "report.html", "summary.parquet",
                           "trades.parquet"]
    for name, frame in (("summary", local.summary), ("trades", local.trades),
                        ("equity", local.equity)):
        with out.open_input(f"{name}.parquet") as written:
            assert pl.read_parquet(written).equals(frame)
    assert out.read_text("report.html").count("<svg") == 2
    manifest = json.loads(out.read_text("manifest.json"))
    assert manifest["best"] == local.manifest["best"]
    assert manifest["runs"] == local.manifest["runs"] == 27
    if kind == "file_uri":
        assert there.out == tmp_path / "remote"
        assert manifest["data_version"] == local.manifest["data_version"]
    else:
        assert there.out == "bucket/runs/x"
        assert manifest["data_version"] == data_version(data)


def test_a_bad_output_location_fails_before_the_sweep(bars_file: Path) -> None:
    with pytest.raises(InvalidInput, match="unsupported storage scheme"):
        run(bars_file, "sma_cross", ["fast=5", "slow=20"], out="ftp://host/runs",
            use_ray=False)
