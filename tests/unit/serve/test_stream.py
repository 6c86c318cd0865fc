"""MarketHub publishing: conflation, the frame budget, oldest-first order, adaptation."""

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from serve.stream import MarketHub, Subscriber
from tests.unit.serve.fakes import FakeGateway


def _data(symbol, price):
    return {"symbol": symbol, "price": price, "timestamp": "2026-11-24T15:00:00Z"}


@pytest.fixture
def hub():
    return MarketHub(FakeGateway(), initial_budget=10)


def _subscribers(hub, n, symbols):
    subs = [Subscriber(websocket=None) for _ in range(n)]
    for sub in subs:
        hub.add(sub)
        hub.subscribe(sub, symbols, ["market"])
    return subs


def test_a_slow_reader_gets_only_the_latest_frame_per_symbol(hub):
    (sub,) = _subscribers(hub, 1, ["AAPL"])
    for price in (1.0, 2.0, 3.0):
        hub.record_changes({"AAPL": _data("AAPL", price)})
        hub.publish_due()
    assert list(sub.pending) == [("AAPL", "market")]
    frame = orjson.loads(sub.pending[("AAPL", "market")])
    assert frame["data"]["price"] == 3.0
    assert frame["seq"] == 3
    assert sub.conflated == 2


def test_publishing_stops_at_the_budget_and_resumes_with_the_oldest(hub):
    symbols = [f"S{i}" for i in range(6)]
    subs = _subscribers(hub, 4, symbols)  # each symbol: 4 frames; budget 10 -> 2 symbols
    hub.record_changes({s: _data(s, 1.0) for s in symbols})
    assert hub.publish_due() == 8
    assert {k[0] for k in subs[0].pending} == {"S0", "S1"}
    hub.record_changes({"S0": _data("S0", 2.0)})  # changes again: queues behind S2..S5
    for sub in subs:
        sub.pending.clear()
    assert hub.publish_due() == 8
    assert {k[0] for k in subs[0].pending} == {"S2", "S3"}
    for sub in subs:
        sub.pending.clear()
    hub.publish_due()
    assert {k[0] for k in subs[0].pending} == {"S4", "S5"}
    for sub in subs:
        sub.pending.clear()
    hub.publish_due()
    assert {k[0] for k in subs[0].pending} == {"S0"}


def test_a_symbol_larger_than_the_budget_is_still_published(hub):
    subs = _subscribers(hub, 25, ["AAPL"])
    hub.record_changes({"AAPL": _data("AAPL", 1.0)})
    assert hub.publish_due() == 25
    assert all(s.pending for s in subs)


def test_every_subscriber_is_served_under_a_tight_budget():
    hub = MarketHub(FakeGateway(), initial_budget=3)
    symbols = [f"S{i:02d}" for i in range(30)]
    subs = [Subscriber(websocket=None) for _ in range(40)]
    for i, sub in enumerate(subs):
        hub.add(sub)
        hub.subscribe(sub, symbols[i % 30: i % 30 + 3], ["market"])
    received = dict.fromkeys(map(id, subs), 0)
    for tick in range(40):  # every symbol changes on every poll
        hub.record_changes({s: _data(s, float(tick)) for s in symbols})
        hub.publish_due()
        for sub in subs:
            received[id(sub)] += len(sub.pending)
            sub.pending.clear()
    assert min(received.values()) > 0


def test_budget_grows_while_writers_keep_up_and_shrinks_when_they_fall_behind(hub):
    (sub,) = _subscribers(hub, 1, ["AAPL", "MSFT"])
    hub.record_changes({"AAPL": _data("AAPL", 1.0), "MSFT": _data("MSFT", 1.0)})
    hub.budget = 1
    hub.publish_due()  # one of two published: the budget limited it
    sub.pending.clear()
    hub.adapt()
    assert hub.budget > 1
    grown = hub.budget
    sub.pending.update({("A", "market"): "x", ("B", "market"): "y", ("C", "market"): "z"})
    sub.pending.update({(f"X{i}", "market"): "x" for i in range(40)})
    hub.adapt()
    assert hub.budget < grown


def test_unsubscribing_the_last_listener_forgets_the_symbol(hub):
    (sub,) = _subscribers(hub, 1, ["AAPL"])
    hub.record_changes({"AAPL": _data("AAPL", 1.0)})
    hub.unsubscribe(sub, ["AAPL"], ["market"])
    assert "AAPL" not in hub.latest
    assert hub.publish_due() == 0


def test_writer_sends_pending_frames_and_counts_them():
    sent = []

    class FakeSocket:
        async def send_text(self, text):
            sent.append(text)

    async def run():
        sub = Subscriber(FakeSocket())
        task = asyncio.create_task(sub.writer())
        sub.offer(("AAPL", "market"), "a")
        sub.offer(("MSFT", "market"), "b")
        await asyncio.sleep(0.01)
        assert sub.unsent == 0
        task.cancel()
        return sub

    sub = asyncio.run(run())
    assert sent == ["a", "b"]
    assert sub.sent == 2


def test_budget_shrinks_when_a_poll_cycle_overruns(hub):
    _subscribers(hub, 1, ["AAPL"])
    hub.budget = 1_000
    hub.adapt(cycle_s=hub.poll_interval_s * 1.2)  # on time: unchanged (nothing waiting)
    assert hub.budget == 1_000
    hub.adapt(cycle_s=hub.poll_interval_s * 5, idle_s=hub.poll_interval_s * 4)
    assert hub.budget == 1_000  # long, but its fetch spent it waiting for the feed
    hub.adapt(cycle_s=hub.poll_interval_s * 5)  # the event loop is saturated
    assert hub.budget < 1_000


def test_a_cycle_that_waited_for_data_has_its_length_to_spend(hub):
    (sub,) = _subscribers(hub, 1, ["AAPL", "MSFT"])
    hub.note_changed(["AAPL"])
    interval = hub.poll_interval_s
    hub.budget = 1_000
    # a fetch that waited 0.4 intervals for the shards: a 1.4-interval cycle, 0.7 of it CPU
    hub.adapt(cycle_s=1.4 * interval, cpu_s=0.7 * interval, idle_s=0.4 * interval)
    assert hub.budget >= 1_000  # half the cycle: within the loop's share
    # the same CPU in a cycle that was long for want of CPU, not data: over the share
    hub.budget = 1_000
    hub.adapt(cycle_s=1.4 * interval, cpu_s=0.7 * interval)
    assert hub.budget == pytest.approx(1_000 * 0.5 / 0.7)


def test_a_light_fan_out_fetches_every_change_and_a_heavy_one_what_it_can_publish(hub):
    _subscribers(hub, 1, ["S0", "S1"])
    hub.note_changed(["S1"])
    assert hub.fetch_plan() == (["S1"], None)  # 2 subscriptions, budget 10

    symbols = [f"S{i}" for i in range(6)]
    _subscribers(hub, 4, symbols)  # 26 subscriptions over 6 symbols, budget 10
    hub.record_changes({s: _data(s, 1.0) for s in symbols})
    hub.publish_due()  # S1 (5 listeners, waiting first) and S0 (5) go out; S2..S5 wait

    assert hub.fetch_plan() == (["S2", "S3", "S4"], 3)  # ceil(10 * 6 / 26)


def test_a_poll_publishes_only_data_it_fetched_and_waiting_symbols_come_next():
    gateway = FakeGateway()  # AAPL and MSFT, on one fake shard
    hub = MarketHub(gateway, initial_budget=1)
    subs = _subscribers(hub, 3, ["AAPL", "MSFT"])  # 6 subscriptions > budget: fetch 1

    async def poll():
        frames = await hub.poll_once()
        sent = [orjson.loads(frame) for frame in subs[0].pending.values()]
        for sub in subs:
            sub.pending.clear()
        return frames, sent

    frames, sent = asyncio.run(poll())
    assert frames == 3
    assert [f["data"]["symbol"] for f in sent] == ["AAPL"]

    gateway.price = 105.0  # MSFT waited a poll; it must go out with the newest data
    frames, sent = asyncio.run(poll())
    assert frames == 3
    assert [(f["data"]["symbol"], f["data"]["price"]) for f in sent] == [("MSFT", 105.0)]


def test_fetch_plan_follows_subscribes_repeats_and_disconnects(hub):
    symbols = [f"S{i}" for i in range(6)]
    subs = _subscribers(hub, 4, symbols)  # 24 subscriptions > budget 10
    hub.subscribe(subs[0], symbols, ["market"])  # a repeat adds nothing
    assert hub.fetch_plan()[1] == 3  # ceil(10 * 6 / 24)

    for sub in subs[1:]:
        hub.remove(sub)  # 6 subscriptions left: the budget covers them all
    assert hub.fetch_plan() == ([], None)


def test_budget_follows_the_loops_cpu_share_of_the_poll_interval(hub):
    (sub,) = _subscribers(hub, 1, ["AAPL", "MSFT"])
    hub.note_changed(["AAPL"])  # the budget, not the market, is what holds frames back
    interval = hub.poll_interval_s
    hub.budget = 1_000
    # the loop spent the whole last cycle on its own work: twice its 50% share
    hub.adapt(cycle_s=interval, cpu_s=interval)
    assert hub.budget == 500
    # far over its share: cut by half at most in one poll
    hub.adapt(cycle_s=interval, cpu_s=interval * 10)
    assert hub.budget == 250
    # time to spare: grows, but by at most 25% a poll
    hub.adapt(cycle_s=interval, cpu_s=interval * 0.1)
    assert hub.budget == 250 * 1.25 + 10
    # a little spare: grows only as far as the share allows
    hub.budget = 1_000
    hub.adapt(cycle_s=interval, cpu_s=interval * 0.45)
    assert 1_000 < hub.budget < 1_000 * 0.5 / 0.45 + 10 + 1e-9
    # frames left unsent win over spare CPU time
    hub.budget = 1_000
    sub.pending.update({(f"X{i}", "market"): "x" for i in range(300)})
    hub.adapt(cycle_s=interval, cpu_s=interval * 0.1)
    assert hub.budget == 700


def test_stats_report_the_age_of_published_data(hub):
    assert hub.stats()["published_age_ms"] is None
    _subscribers(hub, 2, ["AAPL", "MSFT", "IBM"])
    now = datetime.now(UTC)
    hub.record_changes({
        "AAPL": {"symbol": "AAPL", "timestamp": _iso(now - timedelta(seconds=2))},
        "MSFT": {"symbol": "MSFT", "timestamp": _iso(now - timedelta(seconds=4))},
        "IBM": {"symbol": "IBM", "timestamp": None},  # no tick yet: published, not aged
    })
    assert hub.publish_due() == 6

    age = hub.stats()["published_age_ms"]
    assert age["samples"] == 2
    assert 2_000 <= age["p50"] < 4_000  # the median of 2 s and 4 s, plus the test's own time
    assert 4_000 <= age["p99"] < 5_000


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z")
