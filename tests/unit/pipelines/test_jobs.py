"""The research jobs' shared epilogue: outputs (at a path, a file:// URI or an object store),
manifest, locations, the command line's end."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest

from core.errors import InvalidInput
from core.storage import Storage
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


@pytest.mark.parametrize("kind", ["file_uri", "memory"])
def test_write_outputs_to_a_uri_or_an_object_store(tmp_path: Path, kind: str) -> None:
    table = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    if kind == "file_uri":
        out: str | Storage = f"file://{tmp_path}/out"
        storage = Storage(out)
    else:
        storage = out = Storage("bucket/out", filesystem=pafs._MockFileSystem())

    shown = _jobs.write_outputs(out, {"t": table}, _jobs.manifest("demo", {}, None))

    assert shown == (tmp_path / "out" if kind == "file_uri" else "bucket/out")
    assert storage.files() == ["manifest.json", "t.parquet"]
    with storage.open_input("t.parquet") as written:
        assert pl.read_parquet(written).equals(table)
    assert json.loads(storage.read_text("manifest.json"))["job"] == "demo"


def test_locations_keep_uris_and_storages_and_refuse_unknown_schemes(tmp_path: Path) -> None:
    bucket = Storage("bucket/lake", filesystem=pafs._MockFileSystem())
    assert _jobs.input_location(bucket) is bucket
    assert _jobs.input_location("s3://bucket/lake") == "s3://bucket/lake"
    assert _jobs.input_location(tmp_path / "lake") == str(tmp_path / "lake")
    assert _jobs.output_storage(bucket) is bucket
    with pytest.raises(InvalidInput, match="recordings ftp://host/x: unsupported"):
        _jobs.output_storage("ftp://host/x", what="recordings")
    assert _jobs.storage_version(bucket) is None  # no bars there yet
