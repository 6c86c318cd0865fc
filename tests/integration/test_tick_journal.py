"""RedisJournal against the shared Redis (own key prefix), and against no Redis at all."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from market.cache.tick_journal import RedisJournal
from market.feeds.base import NS_PER_SECOND, BarBatch
from serve.cli import pick_port
from tests.unit.market.feed_stubs import bars, ticks

pytestmark = pytest.mark.integration
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def journal():
    try:
        redis.Redis.from_url(URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    instance = RedisJournal(URL, prefix=f"marketray-test-{uuid.uuid4().hex}:journal:")
    yield instance
    instance.clear(3)
    assert not list(instance.redis.scan_iter(match=f"{instance.prefix}*"))


def test_a_second_journal_on_the_same_prefix_reads_what_the_first_wrote(journal):
    now = time.time_ns()
    assert journal.append({0: (ticks([0, 1], now - 5 * NS_PER_SECOND, 100.0), BarBatch.empty()),
                           1: (ticks([2], now - 4 * NS_PER_SECOND), bars(1, now - 60 * 10**9))})
    assert journal.append({0: (ticks([0], now - 1 * NS_PER_SECOND, 101.0), BarBatch.empty())})
    # The feed's node dies; its successor opens the journal anew.
    successor = RedisJournal(URL, prefix=journal.prefix)
    got, got_bars = successor.read(0, 0)
    assert got.price.tolist() == [100.0, 100.0, 101.0]
    assert got.ts_ns.tolist() == [now - 5 * NS_PER_SECOND] * 2 + [now - NS_PER_SECOND]
    assert len(got_bars) == 0
    assert successor.read(0, now - 2 * NS_PER_SECOND)[0].price.tolist() == [101.0]
    assert len(successor.read(1, 0)[1]) == 4
    assert successor.errors == journal.errors == 0


def test_prune_trims_by_server_time_with_the_skew_margin(journal):
    now = time.time_ns()
    journal.append({0: (ticks([0], now), BarBatch.empty())})
    journal.prune(0, now - 60 * NS_PER_SECOND)  # a cut before the entry: it stays
    assert len(journal.read(0, 0)[0]) == 1
    journal.prune(0, now + 60 * NS_PER_SECOND)  # written well before the cut less the margin
    assert len(journal.read(0, 0)[0]) == 0


def test_without_redis_appends_fail_counted_and_reads_are_empty():
    away = RedisJournal(f"redis://127.0.0.1:{pick_port()}/0", timeout_s=0.2)
    assert away.append({0: (ticks([0], time.time_ns()), BarBatch.empty())}) is False
    assert len(away.read(0, 0)[0]) == 0
    away.prune(0, time.time_ns())
    assert away.errors == 3
