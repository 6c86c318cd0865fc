"""The research jobs' shared epilogue: outputs, manifest, the command line's end."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from core.errors import InvalidInput
from pipelines import _jobs


def test_write_outputs_writes_each_table_and_the_manifest(tmp_path: Path) -> None:
    table = pl.DataFrame({"a": [1, 2]})
    manifest = _jobs.manifest("demo", {"x": 1}, "abc", rows=2)

    target = _jobs.write_outputs(tmp_path / "out", {"first": table, "second": table.head(1)},
                                 manifest)

    assert target == tmp_path / "out"
    assert pl.read_parquet(target / "first.parquet").equals(table)
    assert pl.read_parquet(target / "second.parquet").height == 1
    written = json.loads((target / "manifest.json").read_text())
    assert written["job"] == "demo"
    assert written["config"] == {"x": 1}
    assert written["data_version"] == "abc"
    assert written["seed"] is None
    assert written["rows"] == 2
    assert written["libraries"]["polars"] == pl.__version__


def test_write_outputs_without_out_writes_nothing(tmp_path: Path) -> None:
    assert _jobs.write_outputs(None, {"t": pl.DataFrame()}, {}) is None
    assert list(tmp_path.iterdir()) == []


def test_run_and_print_prints_the_summary_or_the_error(capsys) -> None:
    assert _jobs.run_and_print(lambda: 3, lambda n: {"n": n}) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 3}

    def failing() -> int:
        raise InvalidInput("no such grid")

    assert _jobs.run_and_print(failing, lambda n: {"n": n}) == 2
    assert capsys.readouterr().err.strip() == "error: no such grid"
