"""History store: partitions, reads, compaction and retention (checked with plain polars).

Every test runs on a plain path, a ``file://`` URI and pyarrow's in-memory filesystem
(the object-store branches of core.storage: no rename, whole-object puts).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from market.feeds.base import NS_PER_MINUTE, BarBatch
from market.history import NS_PER_DAY, HistoryStore

DAY0 = (date(2026, 11, 2) - date(1970, 1, 1)).days * NS_PER_DAY


def _bars(symbol_id: int, start_ns: int, n: int, base: float = 100.0) -> BarBatch:
    close = base + np.arange(n, dtype=float)
    return BarBatch.from_columns(
        symbol_id=np.full(n, symbol_id), ts_ns=start_ns + np.arange(n) * NS_PER_MINUTE,
        open=close - 0.5, high=close + 1, low=close - 1, close=close, volume=np.full(n, 10.0))


@pytest.fixture(params=["path", "file_uri", "memory"])
def location(request, tmp_path):
    """Return name -> a location of that kind; the same name gives the same directory."""
    memory = pafs._MockFileSystem()  # an object store without renames, private to this test
    return {"path": lambda name: tmp_path / name,
            "file_uri": lambda name: f"file://{tmp_path / name}",
            "memory": lambda name: Storage(f"bucket/{name}", filesystem=memory)}[request.param]


@pytest.fixture
def store(location):
    return HistoryStore(location("history"), flush_rows=1_000_000)


def _parts(store, symbol="AAPL"):
    return [f for f in store.storage.files() if f"symbol={symbol}/" in f]


def test_append_then_read_returns_bars_oldest_first_with_limit(store):
    store.append_bars(["AAPL", "MSFT"], _bars(0, DAY0 + 600 * NS_PER_MINUTE, 1_500))
    store.append_bars(["AAPL", "MSFT"], _bars(1, DAY0, 10, base=300))
    store.flush()

    bars = store.read_bars("AAPL", limit=100)
    everything = store.read_bars("AAPL")

    assert len(everything) == 1_500
    assert np.all(np.diff(everything.ts_ns) > 0)
    np.testing.assert_array_equal(bars.close, everything.close[-100:])
    assert len(store.read_bars("MSFT")) == 10


def test_partitions_are_hive_style_and_readable_by_plain_polars(store):
    store.append_bars(["AAPL"], _bars(0, DAY0 + 1_000 * NS_PER_MINUTE, 1_000))  # spans two days
    store.flush()

    dirs = sorted({f.rsplit("/", 1)[0] for f in store.storage.files()})
    dataset = ds.dataset(store.storage.root, filesystem=store.storage.fs, format="parquet",
                         partitioning="hive")
    frame = pl.from_arrow(dataset.to_table())

    assert dirs == ["date=2026-11-02/symbol=AAPL", "date=2026-11-03/symbol=AAPL"]
    assert frame.height == 1_000
    assert set(frame["symbol"].unique()) == {"AAPL"}


def test_range_read_is_half_open(store):
    store.append_bars(["AAPL"], _bars(0, DAY0, 100))
    store.flush()

    bars = store.read_bars("AAPL", start_ns=DAY0 + 10 * NS_PER_MINUTE,
                           end_ns=DAY0 + 20 * NS_PER_MINUTE)

    assert len(bars) == 10
    assert bars.ts_ns[0] == DAY0 + 10 * NS_PER_MINUTE


def test_later_write_of_same_minute_wins_before_and_after_compaction(store):
    store.append_bars(["AAPL"], _bars(0, DAY0, 50, base=100))
    store.flush()
    store.append_bars(["AAPL"], _bars(0, DAY0 + 40 * NS_PER_MINUTE, 20, base=900))
    store.flush()
    store.append_bars(["AAPL"], _bars(0, DAY0 + 70 * NS_PER_MINUTE, 5, base=500))  # buffered

    before = store.read_bars("AAPL")
    merged = store.compact()
    after = store.read_bars("AAPL")
    files = _parts(store)

    assert len(before) == 65
    assert before.close[40] == 900
    assert merged == 3
    assert len(files) == 1
    np.testing.assert_array_equal(before.close, after.close)


def test_retention_archives_old_partitions(store, location):
    store.append_bars(["AAPL"], _bars(0, DAY0, 10))
    store.append_bars(["AAPL"], _bars(0, DAY0 + 5 * NS_PER_DAY, 10))
    store.flush()
    archive = location("archive")

    affected = store.apply_retention(3, archive, today=date(2026, 11, 8))

    assert affected == ["date=2026-11-02"]
    assert len(HistoryStore(archive).read_bars("AAPL")) == 10
    assert len(store.read_bars("AAPL")) == 10
    assert not any(f.startswith("date=2026-11-02") for f in store.storage.files())


def test_store_rebuilt_from_the_same_location_reads_what_another_wrote(location):
    writer = HistoryStore(location("shared"), flush_rows=1_000_000)
    writer.append_bars(["AAPL"], _bars(0, DAY0, 30))
    writer.flush()

    reader = HistoryStore(location("shared"))

    np.testing.assert_array_equal(reader.read_bars("AAPL").close, 100.0 + np.arange(30))
    assert reader.symbols() == ["AAPL"]


def test_retention_without_archive_deletes(store):
    store.append_bars(["AAPL"], _bars(0, DAY0, 10))
    store.flush()

    store.apply_retention(1, today=date(2026, 12, 1))

    assert len(store.read_bars("AAPL")) == 0
