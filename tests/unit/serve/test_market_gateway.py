"""Bars beyond the shard's window come from the history store, with indicators."""

import numpy as np
import talib

from market.feeds.base import NS_PER_MINUTE, TRADE, TickBatch
from market.history import HistoryStore
from market.shard import Shard, ShardConfig
from serve.market_gateway import history_bars

T0 = 1_764_000_000 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE


def test_shard_persists_closed_bars_and_history_bars_carry_talib_exact_sma(tmp_path):
    rng = np.random.default_rng(8)
    n = 300
    ts = T0 + np.arange(n) * NS_PER_MINUTE + 1_000_000
    price = 40 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    shard = Shard(["AMD"], ["AMD"], ShardConfig(history_dir=tmp_path, bar_capacity=50))
    ticks = TickBatch.from_columns(kind=np.full(n, TRADE), symbol_id=np.zeros(n), ts_ns=ts,
                                   price=price, size=np.full(n, 10.0), bid=np.full(n, np.nan),
                                   ask=np.full(n, np.nan), bid_size=np.full(n, np.nan),
                                   ask_size=np.full(n, np.nan))
    for chunk in np.array_split(np.arange(n), 7):
        shard.ingest(ticks.take(chunk))
    shard.flush_history()

    stored = HistoryStore(tmp_path).read_bars("AMD")
    assert len(stored) == n - 1  # every closed bar; the last minute is still forming
    np.testing.assert_allclose(stored.close, price[:-1])

    end_ns = int(stored.ts_ns[-60])  # bars before the 60 newest stored ones
    older = history_bars(HistoryStore(tmp_path), "AMD", end_ns=end_ns, limit=100)

    assert len(older) == 100
    expected_ts = stored.ts_ns[-160:-60]
    got_ts = np.array([np.datetime64(b["timestamp"].replace("Z", ""), "ns").astype(np.int64)
                       for b in older])
    np.testing.assert_array_equal(got_ts, expected_ts)
    sma = np.array([b["sma_20"] for b in older], dtype=float)
    np.testing.assert_allclose(sma, talib.SMA(stored.close, 20)[-160:-60], rtol=1e-9)
