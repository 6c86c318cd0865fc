"""The observability commands: audit verify's exit codes and the Prometheus targets file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.serve.observability.chains import lines_of, write_chain


def test_cli_verify_exit_codes_and_names_entry(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from serve.cli import main

    write_chain(tmp_path, 6)
    assert main(["audit", "verify", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("OK 1 chains, 7 entries verified")
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    del lines[2]
    path.write_text("".join(lines))

    assert main(["audit", "verify", "--dir", str(tmp_path)]) == 1
    assert "TAMPERED replica-a/000001.jsonl:3 (seq 4): entry 3 deleted" in (
        capsys.readouterr().out)


def test_targets_file_is_prometheus_file_discovery(tmp_path: Path) -> None:
    from serve.observability.cli import write_targets_file

    write_targets_file(tmp_path / "t.json", ["10.0.0.5:8080", "10.0.0.6:8080"])

    assert json.loads((tmp_path / "t.json").read_text()) == [
        {"targets": ["10.0.0.5:8080", "10.0.0.6:8080"], "labels": {"job": "marketray"}}]
