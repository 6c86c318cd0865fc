"""MemoryJournal: what the router replays from when no Redis is configured."""

from market.feeds.base import NS_PER_MINUTE, BarBatch, TickBatch
from market.feeds.journal import MemoryJournal, journal_from_settings
from tests.unit.market.feed_stubs import T0, bars, ticks


def test_read_returns_what_was_appended_from_a_time_in_order_per_shard():
    journal = MemoryJournal()
    for minute in range(3):
        journal.append({0: (ticks([0, 1], T0 + minute * NS_PER_MINUTE, 100.0 + minute),
                            BarBatch.empty()),
                        1: (ticks([2], T0 + minute * NS_PER_MINUTE + 5), bars(1))})
    got, got_bars = journal.read(0, T0 + NS_PER_MINUTE)
    assert got.ts_ns.tolist() == [T0 + NS_PER_MINUTE] * 2 + [T0 + 2 * NS_PER_MINUTE] * 2
    assert got.price.tolist() == [101.0, 101.0, 102.0, 102.0]
    assert len(got_bars) == 0
    assert len(journal.read(1, 0)[0]) == 3
    assert len(journal.read(1, 0)[1]) == 3 * 4  # one bar per symbol in each append
    assert len(journal.read(1, T0 + 1)[1]) == 0  # every bar starts at T0
    assert len(journal.read(2, 0)[0]) == 0  # a shard never written to


def test_prune_forgets_entries_wholly_before_the_cut_and_the_bound_drops_the_oldest():
    journal = MemoryJournal(max_ticks=5)
    for minute in range(4):
        journal.append({0: (ticks([0, 1], T0 + minute * NS_PER_MINUTE), BarBatch.empty())})
    assert journal.dropped_ticks == 4  # 8 appended, at most 5 kept: minutes 0 and 1 went
    assert journal.read(0, 0)[0].ts_ns.min() == T0 + 2 * NS_PER_MINUTE
    journal.prune(0, T0 + 3 * NS_PER_MINUTE)
    assert journal.read(0, 0)[0].ts_ns.tolist() == [T0 + 3 * NS_PER_MINUTE] * 2
    journal.clear(1)
    assert len(journal.read(0, 0)[0]) == 0


def test_empty_parts_are_not_entries_and_settings_without_redis_give_memory():
    from core.settings import Settings

    journal = MemoryJournal()
    assert journal.append({0: (TickBatch.empty(), BarBatch.empty())})
    assert journal.entries == {}
    memory = journal_from_settings(Settings())
    assert isinstance(memory, MemoryJournal)
    assert memory.durable is False
