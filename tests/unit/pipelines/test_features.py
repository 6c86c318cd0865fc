"""pipelines.features in process (no Ray): a lake at a path, a file:// URI or an object store
(pyarrow's in-memory filesystem) gives per symbol and year the frames
market.research.features computes from the same bars, and a manifest of the run."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest

from core.errors import InvalidInput, NotFound
from core.storage import Storage
from market.research.data import data_version, load_bars
from market.research.features import features
from market.research.lake import simulate_bars, trading_days, write_bars
from pipelines.features import main, run

SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    days = trading_days(date(2024, 12, 30), date(2025, 1, 2))  # two years per symbol
    write_bars(root, simulate_bars(SYMBOLS, days, seed=4, chunk=0))
    return root


def _locations(lake: Path, out: Path, kind: str) -> tuple[str | Path | Storage, Storage]:
    """Return (the lake, the output) at a location of ``kind``; the output as a Storage."""
    if kind == "path":
        return lake, Storage(out)
    if kind == "file_uri":
        return f"file://{lake}", Storage(f"file://{out}")
    bucket = Storage("bucket", filesystem=pafs._MockFileSystem())
    for file in sorted(p for p in lake.rglob("*.parquet")):
        bucket.write_bytes(f"lake/{file.relative_to(lake).as_posix()}", file.read_bytes())
    return bucket / "lake", bucket / "features"


@pytest.mark.parametrize("kind", ["path", "file_uri", "memory"])
def test_features_by_symbol_and_year_equal_the_library_on_the_same_bars(
        lake: Path, tmp_path: Path, kind: str) -> None:
    data, out = _locations(lake, tmp_path / "features", kind)
    manifest = run(data, out if kind == "memory" else str(out), use_ray=False,
                   symbols_per_task=2)

    assert out.files() == ["manifest.json"] + [
        f"symbol={s}/year={y}/features.parquet" for s in SYMBOLS for y in (2024, 2025)]
    rows = 0
    for item in load_bars(lake, SYMBOLS):
        expected = features(item)
        parts = []
        for year in (2024, 2025):
            with out.open_input(f"symbol={item.symbol}/year={year}/features.parquet") as f:
                part = pl.read_parquet(f)
            assert (part["timestamp"].dt.year() == year).all()
            parts.append(part)
        assert pl.concat(parts).equals(expected)
        rows += expected.height
    assert rows == len(SYMBOLS) * 4 * 390
    assert manifest["rows"] == rows
    assert manifest["job"] == "features"
    assert manifest["config"]["symbols"] == len(SYMBOLS)
    assert manifest["config"]["ray"] is False
    assert manifest["data_version"] == data_version(data)
    if kind != "memory":  # the same files on disk: the same version
        assert manifest["data_version"] == data_version(lake)
    assert set(manifest["timings"]) >= {"total_wall_s", "rows_per_s", "read_s", "compute_s",
                                        "write_s"}
    assert json.loads(out.read_text("manifest.json")) == json.loads(
        json.dumps(manifest, default=str))


def test_a_subset_writes_only_its_symbols_and_a_rerun_replaces_the_files(
        lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    first = run(lake, out, symbols=["BBB"], use_ray=False)
    before = (out / "symbol=BBB" / "year=2025" / "features.parquet").read_bytes()
    again = run(lake, out, symbols=["BBB"], use_ray=False)

    assert sorted(p.parent.parent.name for p in out.rglob("*.parquet")) == ["symbol=BBB"] * 2
    assert first["rows"] == again["rows"] == 4 * 390
    assert (out / "symbol=BBB" / "year=2025" / "features.parquet").read_bytes() == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries left


def test_bad_inputs_give_clear_errors(lake: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NotFound, match="no bar data"):
        run(tmp_path / "missing", tmp_path / "out", use_ray=False)
    with pytest.raises(InvalidInput, match="unsupported storage scheme"):
        run(lake, "ftp://host/features", use_ray=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    pl.DataFrame({"symbol": ["X"], "close": [1.0]}).write_parquet(bad / "bars.parquet")
    with pytest.raises(InvalidInput, match="timestamp"):
        run(bad, tmp_path / "out", use_ray=False)
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                 "--no-ray"]) == 2
    assert capsys.readouterr().err.startswith("error: no bar data")
