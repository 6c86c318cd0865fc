"""``marketray research``: one subcommand per job, with the job's own options, run by it."""

from __future__ import annotations

import argparse
import importlib

import pytest

import serve.cli_research as cli_research


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marketray")
    cli_research.register(parser.add_subparsers(dest="command"))
    return parser


def test_research_lists_every_job(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["research", "--help"])

    listed = capsys.readouterr().out
    assert info.value.code == 0
    assert all(job in listed for job in cli_research.JOBS)


@pytest.mark.parametrize("job", sorted(cli_research.JOBS))
def test_each_job_takes_its_own_options(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(cli_research.JOBS[job][0])

    with pytest.raises(SystemExit):
        _parser().parse_args(["research", job])  # every job needs at least --out

    assert callable(module.run_from_args)
    assert f"research {job}: error: the following arguments are required: " in (
        capsys.readouterr().err)


def test_a_job_runs_through_its_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(cli_research.JOBS["features"][0])
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(module, "run_from_args", lambda args: seen.append(args) or 3)

    args = _parser().parse_args(["research", "features", "--data", "lake", "--out", "out"])

    assert args.func(args) == 3
    assert seen == [args]


def test_an_unknown_job_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["research", "astrology"])

    assert "invalid choice: 'astrology'" in capsys.readouterr().err
