"""The metric recorder and the feed and shard collectors (no Ray started)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from actors.telemetry import CATALOGUE, FeedCollector, Recorder, ShardMetrics
from market.feeds.sim import SimulatedFeed
from market.shard import Shard


def test_recorder_sums_counters_keeps_last_gauge_and_every_observation() -> None:
    recorder = Recorder()
    for _ in range(3):
        recorder.inc("marketray_feed_reconnects_total")
    recorder.set("marketray_redis_up", (), 0.0)
    recorder.set("marketray_redis_up", (), 1.0)
    recorder.observe("marketray_kb_search_seconds", (), 0.2)
    recorder.observe("marketray_kb_search_seconds", (), 0.4)

    counts, gauges, observations = recorder.drain()

    assert counts == {("marketray_feed_reconnects_total", ()): 3}
    assert gauges == {("marketray_redis_up", ()): 1.0}
    assert observations == {("marketray_kb_search_seconds", ()): [0.2, 0.4]}
    assert recorder.drain() == ({}, {}, {})


def test_recorder_thread_safe_counts_exact() -> None:
    recorder = Recorder()

    def work() -> None:
        for _ in range(20_000):
            recorder.inc("marketray_llm_tokens_total")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    total = 0.0
    while any(t.is_alive() for t in threads):
        total += recorder.drain()[0].get(("marketray_llm_tokens_total", ()), 0.0)
    for thread in threads:
        thread.join()
    total += recorder.drain()[0].get(("marketray_llm_tokens_total", ()), 0.0)

    assert total == 80_000


class FakeRunner:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {
            "shards": 3, "shards_waiting": [1],
            "ticks": 100, "option_ticks": 10, "bars": 0, "last_message_ns": 95_000_000_000,
            "restored_bars": 0,
            "detail": {"streams": {"stock": {"reconnects": 1}, "option": {"reconnects": 0}},
                       "dropped_by_reason": {"malformed": 2}, "backfilled_bars": 30}}

    def status(self) -> dict[str, Any]:
        return self.state


def test_feed_collector_exports_deltas_age_and_backpressure() -> None:
    runner, recorder = FakeRunner(), Recorder()
    collect = FeedCollector(runner.status, recorder, clock_ns=lambda: 100_000_000_000)

    collect()
    runner.state.update(ticks=160, option_ticks=10, restored_bars=5)
    runner.state["detail"]["streams"]["option"]["reconnects"] = 2
    runner.state["detail"]["dropped_by_reason"]["unknown_symbol"] = 4
    collect()
    counts, gauges, _ = recorder.drain()

    assert counts[("marketray_feed_messages_total", ("stock",))] == 160
    assert counts[("marketray_feed_messages_total", ("option",))] == 10
    assert ("marketray_feed_messages_total", ("bar",)) not in counts
    assert counts[("marketray_feed_reconnects_total", ())] == 3
    assert counts[("marketray_feed_malformed_total", ("malformed",))] == 2
    assert counts[("marketray_feed_malformed_total", ("unknown_symbol",))] == 4
    assert counts[("marketray_feed_backfilled_bars_total", ())] == 35
    assert gauges[("marketray_feed_newest_tick_age_seconds", ())] == pytest.approx(5.0)
    assert [gauges[("marketray_feed_batches_waiting", (str(k),))] for k in range(3)] == [
        0.0, 1.0, 0.0]


def test_shard_metrics_ticks_refreshes_and_stale_chains() -> None:
    symbols = ("AAPL", "MSFT")
    feed = SimulatedFeed(symbols, seed=3, rate=20_000.0, option_rate=5_000.0)
    warm = asyncio.run(feed.warmup())
    shard = Shard(symbols, symbols)
    shard.ingest(None, None, warm.bars, warm.chains)
    recorder = Recorder()
    metrics = ShardMetrics(shard, "0", recorder)
    batch = feed.next_batch(time.time_ns() + 20_000_000)
    assert len(batch.ticks) > 0

    result = shard.ingest(batch.ticks, batch.option_ticks, None, batch.chains or None)
    metrics.ingested(result, len(batch.option_ticks), 0.003)
    shard.chains.dirty[:] = True
    shard.chains.refreshed_ns[:] = shard.now_ns() - 2_000_000_000
    metrics()
    counts, gauges, observations = recorder.drain()

    assert counts[("marketray_shard_starts_total", ("0",))] == 1
    assert counts[("marketray_shard_ticks_total", ("0", "stock"))] == len(batch.ticks)
    assert counts[("marketray_shard_ticks_total", ("0", "option"))] == len(batch.option_ticks)
    assert observations[("marketray_shard_ingest_seconds", ("0",))] == [0.003]
    assert gauges[("marketray_shard_stale_chains", ("0",))] == int(
        np.count_nonzero(shard.chains.count > 0))
    assert gauges[("marketray_shard_snapshot_age_seconds", ("0",))] >= 0


def test_catalogue_names_prefixed_and_counters_end_in_total() -> None:
    for name, spec in CATALOGUE.items():
        assert name.startswith("marketray_")
        assert name.endswith("_total") == (spec.kind == "counter"), name


def test_unknown_metric_label_count_rejected_at_export() -> None:
    from actors.telemetry import RaySink

    with pytest.raises(ValueError, match="takes labels"):
        RaySink()._tags(("marketray_requests_total", ("http",)))
