"""The research lake's writers on a path, a file:// URI and an in-memory object store."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from market.research.lake import (
    bars_exist,
    bars_key,
    read_symbol_year,
    simulate_bars,
    trading_days,
    write_bars,
)


@pytest.fixture(params=["path", "file_uri", "memory"])
def root(request, tmp_path):
    return {"path": tmp_path / "lake", "file_uri": f"file://{tmp_path}/lake",
            "memory": Storage("bucket/lake", filesystem=pafs._MockFileSystem())}[request.param]


def _bars(days: list[date]) -> pl.DataFrame:
    return simulate_bars(["AAA", "BBB"], days, seed=5, chunk=0)


def test_written_symbol_years_read_back_sorted_and_complete(root):
    frame = _bars(trading_days(date(2025, 12, 30), date(2026, 1, 2)))

    written = write_bars(root, frame)

    assert len(written) == 4  # two symbols, two years
    for symbol in ("AAA", "BBB"):
        for year in (2025, 2026):
            want = frame.filter((pl.col("symbol") == symbol)
                                & (pl.col("timestamp").dt.year() == year))
            got = read_symbol_year(root, symbol, year)
            assert bars_exist(root, symbol, year)
            assert got is not None
            assert got.equals(want.sort("timestamp"))
    assert not bars_exist(root, "AAA", 2024)
    assert read_symbol_year(root, "CCC", 2026) is None


def test_rewriting_a_minute_merges_and_the_new_bar_wins(root):
    days = trading_days(date(2026, 3, 2), date(2026, 3, 3))
    first = _bars(days[:1])
    write_bars(root, first)
    changed = _bars(days).with_columns((pl.col("close") * 0 + 1.0).alias("close"))

    write_bars(root, changed)
    got = read_symbol_year(root, "AAA", 2026)

    assert got is not None
    assert got.height == changed.filter(pl.col("symbol") == "AAA").height
    assert got["close"].to_list() == [1.0] * got.height
    assert got["timestamp"].is_sorted()


def test_files_are_at_their_documented_keys(root):
    write_bars(root, _bars(trading_days(date(2026, 3, 2), date(2026, 3, 2))))

    storage = root if isinstance(root, Storage) else Storage(root)

    assert storage.files() == [bars_key("AAA", 2026), bars_key("BBB", 2026)]
