"""``marketray backup|restore|history|fake-alpaca``: the data commands over the data dir."""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import serve.cli_data as cli_data
from core.settings import Settings
from market.backup import verify
from market.feeds.alpaca_fake import FakeAlpacaServer
from market.feeds.base import BarBatch
from market.history import HistoryStore

NS_PER_DAY = 86_400 * 1_000_000_000


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="marketray")
    cli_data.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "index").mkdir(parents=True)
    (root / "index" / "vectors.bin").write_bytes(bytes(range(256)) * 4)
    (root / "secret.key").write_text("s3cret")
    monkeypatch.setenv("MARKETRAY_DATA_DIR", str(root))
    return root


def test_backup_prints_the_archive_and_restore_needs_yes_over_a_non_empty_dir(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("backup", "--dest", str(tmp_path / "backups")) == 0
    archive = Path(capsys.readouterr().out.strip())
    (data_dir / "secret.key").write_text("changed")

    refused = _run("restore", str(archive))
    refusal = capsys.readouterr().err
    unchanged = (data_dir / "secret.key").read_text()
    restored = _run("restore", str(archive), "--yes")
    report = json.loads(capsys.readouterr().out)

    assert archive.parent == tmp_path / "backups"
    assert refused == 2
    assert f"{data_dir} is not empty; pass --yes" in refusal
    assert unchanged == "changed"
    assert restored == 0
    assert (data_dir / "secret.key").read_text() == "s3cret"
    assert report["restored"] == str(data_dir)
    assert report["files"] == len(verify(archive)["files"]) == 2
    assert (Path(report["previous"]) / "secret.key").read_text() == "changed"


def test_backup_defaults_to_the_data_dirs_backups_folder(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("backup") == 0

    archive = Path(capsys.readouterr().out.strip())
    assert archive.parent == data_dir / "backups"
    assert set(verify(archive)["files"]) == {"index/vectors.bin", "secret.key"}


def test_a_corrupt_archive_is_one_line_on_stderr_and_exit_1(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("backup", "--dest", str(tmp_path)) == 0
    archive = Path(capsys.readouterr().out.strip())
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))

    code = _run("restore", str(archive), "--yes")

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("marketray: ")
    assert err.count("\n") == 1
    assert "corrupt" in err
    assert (data_dir / "secret.key").read_text() == "s3cret"
    assert _run("restore", str(tmp_path / "missing.tar.gz")) == 1  # OSError, same shape
    assert capsys.readouterr().err.startswith("marketray: ")


def _bars(day_ns: int, minutes: range, price: float) -> BarBatch:
    ts = day_ns + np.asarray(minutes, dtype=np.int64) * 60 * 1_000_000_000
    close = price + np.arange(len(ts), dtype=np.float64)
    return BarBatch.from_columns(symbol_id=np.zeros(len(ts)), ts_ns=ts, open=close,
                                 high=close + 1, low=close - 1, close=close,
                                 volume=np.full(len(ts), 10.0))


def _history(data_dir: Path) -> tuple[HistoryStore, int, int]:
    """Write three flushes of AAPL bars today and one 400 days ago; return the store."""
    store = HistoryStore(Settings(data_dir=data_dir).storage("history"))
    today = int(datetime.now(UTC).timestamp()) * 1_000_000_000 // NS_PER_DAY * NS_PER_DAY
    old = today - 400 * NS_PER_DAY
    for i, minutes in enumerate((range(0, 10), range(5, 15), range(15, 20))):
        store.append_bars(["AAPL"], _bars(today, minutes, 100.0 + 50 * i))
        store.flush()
    store.append_bars(["AAPL"], _bars(old, range(0, 3), 10.0))
    store.flush()
    return store, today, old


def test_history_compact_merges_files_and_keeps_the_bars(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _, _ = _history(data_dir)
    before = store.read_bars("AAPL")
    files = sorted(store.storage.files())

    assert _run("history", "compact") == 0

    after = store.read_bars("AAPL")
    assert json.loads(capsys.readouterr().out) == {"files_merged": 3}  # the old day has one
    assert len(store.storage.files()) == len(files) - 2
    assert len(before) == 23  # minutes 0-19 today and 0-2 of the old day
    # minute 5 was written by the first flush, then by the second: the later write wins
    assert before.close[3 + 5] == after.close[3 + 5] == 150.0
    for column in ("ts_ns", "open", "close", "volume"):
        np.testing.assert_array_equal(getattr(after, column), getattr(before, column))


@pytest.mark.parametrize("archive", [False, True], ids=["delete", "archive"])
def test_history_retention_drops_or_moves_the_old_partitions(
        data_dir: Path, tmp_path: Path, archive: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    store, today, old = _history(data_dir)
    old_day = f"date={datetime.fromtimestamp(old / 1e9, UTC).date().isoformat()}"
    extra = ("--archive", str(tmp_path / "cold")) if archive else ()

    assert _run("history", "retention", "--days", "30", *extra) == 0

    report = json.loads(capsys.readouterr().out)
    assert report == {"days": 30, "archived" if archive else "deleted": [old_day]}
    kept = store.read_bars("AAPL")
    assert len(kept) == 20
    assert kept.ts_ns.min() >= today
    moved = sorted(p.relative_to(tmp_path / "cold").parts[0]
                   for p in (tmp_path / "cold").rglob("*.parquet")) if archive else []
    assert moved == ([old_day] if archive else [])


def test_retention_defaults_to_the_settings_days(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _history(data_dir)
    monkeypatch.setenv("MARKETRAY_HISTORY_RETENTION_DAYS", "500")

    assert _run("history", "retention") == 0

    assert json.loads(capsys.readouterr().out) == {"days": 500, "deleted": []}


def test_fake_alpaca_prints_settings_that_point_at_the_server(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    served: list[FakeAlpacaServer] = []

    async def serve_once(self: FakeAlpacaServer) -> None:
        served.append(self)
        raise KeyboardInterrupt  # what Ctrl-C does to the real serve()

    monkeypatch.setattr(FakeAlpacaServer, "serve", serve_once)

    code = _run("fake-alpaca", "--port", "8791", "--key", "k1", "--secret", "s1",
                "--time-scale", "60")

    out = capsys.readouterr().out
    (server,) = served
    assert code == 0
    assert (server.port, server.key, server.secret, server.time_scale) == (8791, "k1", "s1", 60)
    # the printed lines, taken as the environment, configure marketray for this server
    for line in out.splitlines():
        for word in shlex.split(line):
            name, _, value = word.partition("=")
            if name.startswith("MARKETRAY_"):
                monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.feed == "alpaca"
    assert settings.alpaca_key_id is not None
    assert settings.alpaca_key_id.get_secret_value() == "k1"
    assert settings.alpaca_secret_key is not None
    assert settings.alpaca_secret_key.get_secret_value() == "s1"
    assert settings.alpaca_data_url == settings.alpaca_trading_url == server.base_url
    assert settings.alpaca_stock_stream_url == server.stock_stream_url()
    assert settings.alpaca_option_stream_url == server.option_stream_url()
    assert f"curl '{server.base_url}/_control?fault=drop" in out


def test_the_data_commands_default_to_documented_values() -> None:
    parser = argparse.ArgumentParser(prog="marketray")
    cli_data.register(parser.add_subparsers(dest="command", required=True))

    fake = parser.parse_args(["fake-alpaca"])
    retention = parser.parse_args(["history", "retention"])

    assert (fake.host, fake.port, fake.key, fake.time_scale) == (
        "127.0.0.1", 8790, "test-key", 1.0)
    assert (retention.days, retention.archive) == (None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["history"])  # a history subcommand is required
