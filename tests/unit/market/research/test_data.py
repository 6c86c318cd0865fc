"""Reading bars from the lake layouts and plain files at a path, a file:// URI and an object
store (pyarrow's in-memory filesystem); bars per year from timestamps."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pytest

from core.errors import InvalidInput, NotFound
from core.storage import Storage
from market.research.data import (
    SymbolBars,
    data_version,
    list_symbols,
    load_bars,
    periods_per_year,
)
from market.research.lake import simulate_bars, trading_days, write_bars


def _frame(symbol: str, start_ns: int, closes: list[float]) -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame({
        "ts_ns": np.arange(n, dtype=np.int64) * 60_000_000_000 + start_ns,
        "open": closes, "high": closes, "low": closes, "close": closes, "volume": [1.0] * n})


def test_history_store_layout_reads_per_symbol_with_later_file_winning(tmp_path: Path) -> None:
    day = 1_735_828_200_000_000_000  # 2025-01-02 14:30 UTC
    for symbol, base in (("AAA", 10.0), ("BBB", 20.0)):
        folder = tmp_path / "date=2025-01-02" / f"symbol={symbol}"
        folder.mkdir(parents=True)
        _frame(symbol, day, [base, base + 1, base + 2]).write_parquet(folder / "part-1.parquet")
    # a backfilled bar for the second minute replaces the live one
    _frame("AAA", day + 60_000_000_000, [99.0]).write_parquet(
        tmp_path / "date=2025-01-02" / "symbol=AAA" / "part-2.parquet")
    assert list_symbols(tmp_path) == ["AAA", "BBB"]
    (aaa,) = load_bars(tmp_path, ["AAA"])
    assert aaa.bars.close.tolist() == [10.0, 99.0, 12.0]
    assert np.all(np.diff(aaa.timestamp_ns) == 60_000_000_000)
    (later,) = load_bars(tmp_path, ["AAA"], start_ns=day + 60_000_000_000,
                         end_ns=day + 120_000_000_000)
    assert later.bars.close.tolist() == [99.0]


def test_plain_parquet_and_csv_with_symbol_column(tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "symbol": ["X", "Y", "X"],
        "timestamp": ["2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"],
        "open": [1.0, 2.0, 3.0], "high": [1.0, 2.0, 3.0], "low": [1.0, 2.0, 3.0],
        "close": [1.0, 2.0, 3.0], "volume": [1.0, 1.0, 1.0]})
    frame.write_csv(tmp_path / "bars.csv")
    frame.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC")).write_parquet(
        tmp_path / "bars.parquet")
    for name in ("bars.csv", "bars.parquet"):
        loaded = load_bars(tmp_path / name, ["X", "Y", "Z"])
        assert [b.symbol for b in loaded] == ["X", "Y"]
        assert loaded[0].bars.close.tolist() == [1.0, 3.0]
        assert periods_per_year(loaded[0].timestamp_ns) == 252


def test_missing_columns_and_paths_raise_clear_errors(tmp_path: Path) -> None:
    pl.DataFrame({"symbol": ["X"], "close": [1.0]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InvalidInput, match="timestamp"):
        load_bars(tmp_path / "bad.parquet", ["X"])
    with pytest.raises(NotFound):
        data_version(tmp_path / "nothing-here")


def test_intraday_periods_per_year_counts_bars_per_day() -> None:
    day_ns = 86_400 * 10**9
    stamps = np.concatenate([d * day_ns + np.arange(390) * 60 * 10**9 for d in range(3)])
    assert periods_per_year(stamps.astype(np.int64)) == 252 * 390


@pytest.mark.parametrize("shuffle", [False, True])
def test_periods_per_year_equals_numpy_medians_on_uneven_days(shuffle: bool) -> None:
    rng = np.random.default_rng(5)
    day_ns, minute_ns = 86_400 * 10**9, 60 * 10**9
    stamps = np.concatenate([d * day_ns + np.sort(rng.choice(600, int(rng.integers(200, 400)),
                                                              replace=False)) * minute_ns
                             for d in range(8)]).astype(np.int64)
    if shuffle:
        stamps = rng.permutation(stamps)  # unsorted input takes the np.unique path
    _, per_day = np.unique(stamps // day_ns, return_counts=True)
    assert np.median(np.diff(stamps)) < day_ns / 2 or shuffle
    expected = 252 * float(np.median(per_day)) if np.median(np.diff(stamps)) < day_ns / 2 \
        else 252.0
    assert periods_per_year(stamps) == expected


# The same data at a plain path, a file:// URI and in pyarrow's in-memory filesystem (an
# object store's branch: listed and read through pyarrow) reads the same.
LOCATIONS = ["path", "file_uri", "memory"]


def _place(local: Path, kind: str) -> Path | str | Storage:
    """Return ``local`` (a directory or a file) at a location of ``kind``."""
    if kind == "path":
        return local
    if kind == "file_uri":
        return f"file://{local}"
    bucket = Storage("bucket/data", filesystem=pafs._MockFileSystem())
    if local.is_file():
        bucket.write_bytes(local.name, local.read_bytes())
        return bucket / local.name
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        bucket.write_bytes(file.relative_to(local).as_posix(), file.read_bytes())
    return bucket


def _same(left: list[SymbolBars], right: list[SymbolBars]) -> None:
    assert [b.symbol for b in left] == [b.symbol for b in right]
    for a, b in zip(left, right, strict=True):
        assert a.timestamp_ns.dtype == b.timestamp_ns.dtype == np.int64
        assert np.array_equal(a.timestamp_ns, b.timestamp_ns)
        for column in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(a.bars, column), getattr(b.bars, column))


@pytest.fixture(scope="module")
def research_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    days = trading_days(date(2024, 12, 30), date(2025, 1, 3))  # across a year boundary
    write_bars(root, simulate_bars(["S0000", "S0001", "S0002"], days, seed=2, chunk=0))
    return root


@pytest.mark.parametrize("kind", LOCATIONS)
def test_research_lake_reads_the_same_at_every_location(research_lake: Path, kind: str) -> None:
    where = _place(research_lake, kind)
    local = load_bars(research_lake, ["S0002", "S0000", "ZZZ"])
    assert [b.symbol for b in local] == ["S0002", "S0000"]
    assert len(local[0].bars) == 5 * 390  # the simulator trades every weekday
    assert sorted(p.parent.name for p in (research_lake / "symbol=S0002").rglob("*.parquet")) \
        == ["year=2024", "year=2025"]
    _same(load_bars(where, ["S0002", "S0000", "ZZZ"]), local)
    start = int(local[0].timestamp_ns[500])
    end = int(local[0].timestamp_ns[900])
    ranged = load_bars(where, ["S0000", "S0001"], start_ns=start, end_ns=end)
    _same(ranged, load_bars(research_lake, ["S0000", "S0001"], start_ns=start, end_ns=end))
    assert len(ranged[0].bars) == 400
    assert list_symbols(where) == ["S0000", "S0001", "S0002"]
    assert load_bars(where, ["ZZZ"]) == []


@pytest.mark.parametrize("kind", LOCATIONS)
def test_history_layout_and_plain_files_read_the_same_at_every_location(
        tmp_path: Path, kind: str) -> None:
    day = 1_735_828_200_000_000_000
    history = tmp_path / "history"
    for symbol, base in (("AAA", 10.0), ("BBB", 20.0)):
        folder = history / "date=2025-01-02" / f"symbol={symbol}"
        folder.mkdir(parents=True)
        _frame(symbol, day, [base, base + 1, base + 2]).write_parquet(folder / "part-1.parquet")
    _frame("AAA", day + 60_000_000_000, [99.0]).write_parquet(
        history / "date=2025-01-02" / "symbol=AAA" / "part-2.parquet")
    (history / "date=2025-01-02" / "symbol=AAA" / ".part-3.parquet").write_bytes(b"partial")
    where = _place(history, kind)
    (aaa, bbb) = load_bars(where, ["AAA", "BBB"])
    assert aaa.bars.close.tolist() == [10.0, 99.0, 12.0]  # the later file wins, as on disk
    _same([aaa, bbb], load_bars(history, ["AAA", "BBB"]))
    (later,) = load_bars(where, ["AAA"], start_ns=day + 60_000_000_000,
                         end_ns=day + 120_000_000_000)
    assert later.bars.close.tolist() == [99.0]

    plain = tmp_path / "plain"
    plain.mkdir()
    frame = pl.DataFrame({
        "symbol": ["X", "Y", "X"],
        "timestamp": ["2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"],
        "open": [1.0, 2.0, 3.0], "high": [1.0, 2.0, 3.0], "low": [1.0, 2.0, 3.0],
        "close": [1.0, 2.0, 3.0], "volume": [1.0, 1.0, 1.0]})
    frame.write_csv(plain / "bars.csv")
    frame.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC")).write_parquet(
        plain / "bars.parquet")
    for name in ("bars.csv", "bars.parquet"):
        single = _place(plain / name, kind)
        assert list_symbols(single) == ["X", "Y"]
        _same(load_bars(single, ["X", "Y", "Z"]), load_bars(plain / name, ["X", "Y", "Z"]))
        assert load_bars(single, ["X"])[0].bars.close.tolist() == [1.0, 3.0]


def test_data_version_of_a_file_uri_is_the_paths_and_a_remote_one_follows_its_files(
        research_lake: Path) -> None:
    assert data_version(f"file://{research_lake}") == data_version(research_lake)
    bucket = _place(research_lake, "memory")
    assert isinstance(bucket, Storage)
    first = data_version(bucket)
    assert data_version(bucket) == first
    assert first != data_version(research_lake)  # other modification times
    stored = bucket.read_bytes("symbol=S0001/year=2025/bars.parquet")
    bucket.write_bytes("symbol=S0001/year=2025/bars.parquet", stored + b"\0")
    assert data_version(bucket) != first
    changed = data_version(bucket)
    bucket.write_bytes("symbol=S0001/.year=2025.tmp", b"a write in progress")
    assert data_version(bucket) == changed  # hidden files are not data


def test_remote_locations_give_clear_errors(tmp_path: Path) -> None:
    bucket = Storage("bucket/data", filesystem=pafs._MockFileSystem())
    with pytest.raises(NotFound, match="bucket/data/nothing"):
        load_bars(bucket / "nothing", ["X"])
    bucket.write_text("notes/readme.txt", "no bars")
    with pytest.raises(NotFound, match="no Parquet or CSV"):
        list_symbols(bucket / "notes")
    pl.DataFrame({"symbol": ["X"], "close": [1.0]}).write_parquet(tmp_path / "bad.parquet")
    bucket.write_bytes("bad/bad.parquet", (tmp_path / "bad.parquet").read_bytes())
    with pytest.raises(InvalidInput, match="timestamp"):
        load_bars(bucket / "bad", ["X"])
    with pytest.raises(InvalidInput, match="unsupported storage scheme"):
        load_bars("ftp://host/lake", ["X"])
