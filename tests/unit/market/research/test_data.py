"""Reading bars from the lake layouts and plain files; bars per year from timestamps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInput, NotFound
from market.research.data import data_version, list_symbols, load_bars, periods_per_year


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
