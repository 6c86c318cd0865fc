"""The backfill job in-process: the simulator source, and the command line of both."""

from __future__ import annotations

from pathlib import Path

from market.research.data import data_version, list_symbols, load_bars
from pipelines.backfill import main
from pipelines.backfill import run as backfill


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



def test_alpaca_source_without_symbols_or_start_exits_2(tmp_path: Path, capsys) -> None:
    code = main(["--source", "alpaca", "--out", str(tmp_path)])

    assert code == 2
    assert "needs --symbols and --start" in capsys.readouterr().err


def test_alpaca_source_without_credentials_exits_2(tmp_path: Path, capsys,
                                                   monkeypatch) -> None:
    monkeypatch.delenv("MARKETRAY_ALPACA_KEY_ID", raising=False)
    monkeypatch.delenv("MARKETRAY_ALPACA_SECRET_KEY", raising=False)

    code = main(["--source", "alpaca", "--symbols", "AAPL", "--start", "2025-06-02",
                 "--end", "2025-06-03", "--out", str(tmp_path)])

    assert code == 2
    assert "MARKETRAY_ALPACA_KEY_ID" in capsys.readouterr().err


def test_backfill_into_an_object_store_writes_the_same_lake(tmp_path: Path) -> None:
    import json

    import pyarrow.fs as pafs

    from core.storage import Storage
    from market.research.lake import read_symbol_year

    bucket = Storage("bucket/lake", filesystem=pafs._MockFileSystem())

    first = backfill(bucket, universe=2, sessions=2, seed=3, use_ray=False)
    again = backfill(bucket, universe=2, sessions=2, seed=3, use_ray=False)
    backfill(tmp_path, universe=2, sessions=2, seed=3, use_ray=False)

    for symbol in ("S0000", "S0001"):
        stored = read_symbol_year(bucket, symbol, 2025)
        assert stored is not None
        assert stored.equals(read_symbol_year(tmp_path, symbol, 2025))
    assert first["bars_written"] == 2 * 2 * 390
    assert again["chunks_skipped"] == 1
    assert first["data_version"] == again["data_version"] == data_version(bucket)
    assert first["data_version"] is not None
    assert json.loads(bucket.read_text("manifest.json"))["bars_written"] == 0
