"""The shard actor's long poll: a fetch that has seen every change waits for the next ingest."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from actors.shard import ShardActor
from market.feeds.base import TRADE, TickBatch
from market.shard import ShardConfig

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "MSFT"]
NOW = 1_764_000_000 * 1_000_000_000


@pytest.fixture(scope="module")
def shard():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ShardActor.remote(SYMBOLS, SYMBOLS, ShardConfig())
    ray.shutdown()


def _ingest(shard, price: float, ts_ns: int) -> None:
    trade = TickBatch.from_columns(kind=[TRADE], symbol_id=[0], ts_ns=[ts_ns], price=[price],
                                   size=[100.0], bid=[np.nan], ask=[np.nan],
                                   bid_size=[np.nan], ask_size=[np.nan])
    ray.get(shard.ingest.remote(trade, None, None, None))


def test_a_fetch_that_has_seen_every_change_returns_at_the_next_ingest(shard):
    _ingest(shard, 100.0, NOW)
    since, _, _ = ray.get(shard.market_changes.remote(0, SYMBOLS))
    started = time.monotonic()
    waiting = shard.market_changes.remote(since, SYMBOLS, (), None, 30.0)
    time.sleep(0.3)
    _ingest(shard, 101.0, NOW + 1_000_000)

    sequence, changed, data = ray.get(waiting, timeout=20)

    assert time.monotonic() - started < 20  # woken by the ingest, not by its 30 s limit
    assert sequence > since
    assert changed == ["AAPL"]  # it answered after the ingest: the new trade is in it
    assert data["AAPL"]["price"] == 101.0


def test_a_fetch_with_nothing_new_returns_empty_after_its_wait(shard):
    since, _, _ = ray.get(shard.market_changes.remote(0, SYMBOLS))
    started = time.monotonic()

    sequence, changed, data = ray.get(
        shard.market_changes.remote(since, SYMBOLS, (), None, 0.2), timeout=20)

    assert 0.2 <= time.monotonic() - started < 10
    assert (sequence, changed, data) == (since, [], {})


def test_a_fetch_behind_the_shard_answers_at_once(shard):
    _ingest(shard, 102.0, NOW + 2_000_000)
    started = time.monotonic()

    sequence, changed, data = ray.get(
        shard.market_changes.remote(0, SYMBOLS, (), None, 30.0), timeout=20)

    assert time.monotonic() - started < 10  # changes were waiting: no wait for an ingest
    assert sequence > 0
    assert changed == ["AAPL"]
    assert data["AAPL"]["price"] == 102.0
