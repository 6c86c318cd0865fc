"""market.feeds.recorder: large row groups, names beside ids, a recorder only when recording."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from market.feeds.base import OptionTickBatch
from market.feeds.recorder import TickRecorder, option_ticks_table
from tests.unit.market.feeds.feed_batches import SYMBOLS, aapl_chain, feed_batches, warmup_batch


def test_recorder_writes_large_row_groups(tmp_path):
    rng = np.random.default_rng(1)
    recorder = TickRecorder(tmp_path, row_group_rows=1_000, rotate_rows=10_000_000)
    for batch in feed_batches(100, rng):
        recorder.write(batch, SYMBOLS)
    recorder.close()

    files = list(tmp_path.rglob("ticks/*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata
    assert len(files) == 1
    assert meta.num_rows == 5_000
    assert all(meta.row_group(i).num_rows >= 1_000 for i in range(meta.num_row_groups))
    symbols = pq.read_table(files[0], columns=["symbol"])["symbol"].to_pylist()
    assert set(symbols) == set(SYMBOLS)


def test_recorder_from_settings_only_when_recording(tmp_path):
    from core.settings import Settings
    from market.feeds.recorder import recorder_from_settings

    assert recorder_from_settings(Settings(data_dir=tmp_path)) is None
    recorder = recorder_from_settings(Settings(data_dir=tmp_path, record=True))
    on_uri = recorder_from_settings(Settings(data_dir=f"file://{tmp_path}/u", record=True))
    assert recorder is not None
    assert on_uri is not None
    assert recorder.directory.location.startswith(f"{tmp_path}/recordings/")
    assert on_uri.directory.location.startswith(f"file://{tmp_path}/u/recordings/")
    recorder.close()
    on_uri.close()


def test_option_ticks_carry_the_contract_their_index_names_in_the_chain():
    ticks = OptionTickBatch.from_columns(
        kind=np.zeros(4), symbol_id=[0, 0, 0, 1], contract_index=[1, 0, 7, 0],
        ts_ns=np.arange(4), price=[1.0, 2.0, 3.0, 4.0], size=np.ones(4),
        bid=np.full(4, np.nan), ask=np.full(4, np.nan), bid_size=np.full(4, np.nan),
        ask_size=np.full(4, np.nan))

    table = option_ticks_table(ticks, SYMBOLS, {"AAPL": aapl_chain()}, batch_no=9)

    # index 7 is past AAPL's two contracts and MSFT has no chain: no name, the row kept
    assert table["contract"].to_pylist() == ["AAPL261218P00200000", "AAPL261218C00200000",
                                             None, None]
    assert table["symbol"].to_pylist() == ["AAPL", "AAPL", "AAPL", "MSFT"]
    assert table["price"].to_pylist() == [1.0, 2.0, 3.0, 4.0]
    assert set(table["batch"].to_pylist()) == {9}


def test_every_row_keeps_its_batch_number_and_warmup_flag(tmp_path):
    recorder = TickRecorder(tmp_path, session="s")
    recorder.write(warmup_batch(), SYMBOLS, warmup=True)
    for batch in feed_batches(3, np.random.default_rng(2)):
        recorder.write(batch, SYMBOLS)
    recorder.close()

    ticks = pq.read_table(tmp_path / "s" / "ticks")
    chains = pq.read_table(tmp_path / "s" / "chains")
    options = pq.read_table(tmp_path / "s" / "option_ticks")
    assert sorted(set(ticks["batch"].to_pylist())) == [1, 2, 3]
    assert ticks.num_rows == 150
    assert not any(ticks["warmup"].to_pylist())
    assert chains["warmup"].to_pylist() == [True, True]  # from the warm-up batch only
    assert chains["batch"].to_pylist() == [0, 0]
    # the warm-up's chain names the later option ticks (indexes 0, 1, 0)
    assert options["contract"].to_pylist() == [
        "AAPL261218C00200000", "AAPL261218P00200000", "AAPL261218C00200000"] * 3
    assert recorder.rows_written == {"ticks": 150, "option_ticks": 9, "bars": 4, "chains": 2}
