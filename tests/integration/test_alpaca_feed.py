"""The real alpaca-py clients, driven by AlpacaFeed, against the local Alpaca-protocol server.

The fake server's clock runs 60× fast (one market minute per real second) and
its bars are a pure function of (symbol, minute), so "nothing lost" is checked
by counting: every minute from the first warm-up bar to the end of the run
must be present once the feed has backfilled its gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from core.settings import Settings
from market.feeds.alpaca import AlpacaFeed
from market.feeds.alpaca_fake import NS_MIN, FakeAlpacaServer, bar_at, first_bar_at
from market.feeds.base import FeedBatch

pytestmark = [pytest.mark.integration]
SYMBOLS = "AAPL,MSFT"


@pytest.fixture
def server():
    fake = FakeAlpacaServer(time_scale=60, tick_interval_s=0.05).start()
    yield fake
    fake.stop()


def _settings(server: FakeAlpacaServer, **overrides) -> Settings:
    values = {
        "feed": "alpaca", "symbols": SYMBOLS, "alpaca_key_id": "test-key",
        "alpaca_secret_key": "test-secret", "alpaca_data_url": server.base_url,
        "alpaca_trading_url": server.base_url,
        "alpaca_stock_stream_url": server.stock_stream_url(),
        "alpaca_option_stream_url": server.option_stream_url(),
        "alpaca_silence_s": 1.5, "alpaca_silence_market_hours_only": False,
        "alpaca_backoff_initial_s": 0.2, "alpaca_backoff_max_s": 1.0,
        "alpaca_fatal_retry_s": 60, "alpaca_warmup_minutes": 20, "alpaca_option_budget": 12,
        "feed_interval_ms": 50,
    }
    values.update(overrides)
    return Settings(**values)


class Collector:
    """Runs ``feed.stream()`` in a task and keeps every batch."""

    def __init__(self, feed: AlpacaFeed) -> None:
        self.feed = feed
        self.batches: list[FeedBatch] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.feed.stream():
            self.batches.append(batch)

    async def wait_for(self, predicate, limit_s: float = 10.0) -> None:
        deadline = time.monotonic() + limit_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status={self.feed.status()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.feed.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _bar_minutes(batches: list[FeedBatch], symbol_id: int) -> list[int]:
    return [int(t) // NS_MIN for b in batches for t in b.bars.ts_ns[b.bars.symbol_id == symbol_id]]


async def test_warmup_and_stream_deliver_bars_chains_and_ticks(server):
    feed = AlpacaFeed(_settings(server))

    warm = await feed.warmup()
    run = Collector(feed)
    await run.wait_for(lambda: any(len(b.option_ticks) for b in run.batches)
                       and any(len(b.bars) for b in run.batches))
    await run.stop()

    aapl = warm.bars.take(warm.bars.symbol_id == 0)
    first = int(aapl.ts_ns[0]) // NS_MIN
    assert len(aapl) >= 19
    assert aapl.close[0] == bar_at("AAPL", first)["c"]
    chain = warm.chains["AAPL"]
    expected_oi = [server.open_interest(c) for c in chain.contract]
    assert chain.open_interest.tolist() == expected_oi
    assert np.isfinite(chain.vendor_implied_volatility).all()
    assert set(chain.vendor_greeks) == {"delta", "gamma", "theta", "vega", "rho"}
    assert len(warm.option_ticks) == 2 * len(chain) + 2 * len(warm.chains["MSFT"])
    ticks = [b.ticks for b in run.batches]
    assert sum(len(t) for t in ticks) > 0
    assert all(np.all(np.diff(t.ts_ns) >= 0) for t in ticks)
    status = feed.status()
    assert status.dropped == 0
    assert status.detail["streams"]["option"]["subscribed"]["quotes"] == 12


async def test_a_minute_bar_is_streamed_then_updated_with_its_late_trades(server):
    # Arrange: the stream sends minute m's bar when m ends, then an updated bar ("u") with
    # the late trades' volume 30 market-seconds later (half a second at 60x)
    feed = AlpacaFeed(_settings(server))
    await feed.warmup()
    run = Collector(feed)
    # Act
    await run.wait_for(lambda: server.stats["updated_bars"] >= 6)
    await asyncio.sleep(0.3)
    await run.stop()
    # Assert: for a minute that got both, the preliminary bar comes first, the final one later
    seen: dict[int, list[float]] = {}
    for batch in run.batches:
        rows = batch.bars.take(batch.bars.symbol_id == 0)
        for t, volume in zip(rows.ts_ns, rows.volume, strict=True):
            seen.setdefault(int(t) // NS_MIN, []).append(float(volume))
    both = [m for m, volumes in seen.items() if len(volumes) == 2]
    assert both, seen
    for minute in both:
        assert seen[minute] == [first_bar_at("AAPL", minute)["v"], bar_at("AAPL", minute)["v"]]
    assert feed.status().detail["streams"]["stock"]["subscribed"]["updatedBars"] == 2


async def test_every_fault_is_survived_and_backfill_recovers_every_bar(server):
    feed = AlpacaFeed(_settings(server))
    warm = await feed.warmup()
    run = Collector(feed)
    await run.wait_for(lambda: feed.stock.connects == 1 and feed.option.connects == 1)
    await asyncio.sleep(2.2)

    server.drop()                                   # connection cut
    await run.wait_for(lambda: feed.stock.connects >= 2)
    await asyncio.sleep(1.2)
    server.silence(3.5)                             # connected but mute
    await run.wait_for(lambda: feed.stock.reconnects >= 2, limit_s=8)
    await asyncio.sleep(1.5)
    server.garbage()                                # malformed and unexpected frames
    await asyncio.sleep(1.0)
    server.refuse_next(2)                           # 406 twice on the way back
    server.drop()
    await run.wait_for(lambda: feed.stock.connects >= 4 and feed.option.connects >= 3,
                       limit_s=10)
    await asyncio.sleep(2.2)
    end_minute = server.now_ns() // NS_MIN
    await run.stop()

    status = feed.status()
    assert server.stats["refused_406"] == 2
    assert status.dropped >= server.stats["garbage"] > 0  # each bad frame counted
    assert status.detail["backfilled_bars"] > 0
    for sid, symbol in enumerate(("AAPL", "MSFT")):
        minutes = set(_bar_minutes([warm, *run.batches], sid))
        first = min(minutes)
        expected = set(range(first, end_minute - 1))
        assert expected - minutes == set(), f"{symbol} lost bars"
        for batch in run.batches:
            rows = batch.bars.take(batch.bars.symbol_id == sid)
            for t, close in zip(rows.ts_ns, rows.close, strict=True):
                assert close == bar_at(symbol, int(t) // NS_MIN)["c"]


async def test_rejected_key_reports_a_clear_error_without_a_retry_storm(server, caplog):
    feed = AlpacaFeed(_settings(server, alpaca_secret_key="wrong"))
    warm = await feed.warmup()
    run = Collector(feed)
    await asyncio.sleep(2.0)
    await run.stop()

    status = feed.status()
    assert len(warm.bars) == 0
    assert not status.connected
    assert "authentication failed" in status.error
    # One login on the stock stream, then quiet (no chains loaded, so no option stream).
    assert server.stats["refused_402"] == 1
    assert status.detail["streams"]["stock"]["fatal"]
    logged = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelname == "ERROR"


async def test_insufficient_subscription_is_fatal_and_explained(server):
    server.insufficient_subscription = True
    feed = AlpacaFeed(_settings(server))
    await feed.warmup()
    run = Collector(feed)
    await asyncio.sleep(1.5)
    await run.stop()

    assert "insufficient subscription" in feed.status().error
    assert server.stats["refused_409"] == 2


async def test_second_client_is_refused_406_and_backs_off(server):
    first = AlpacaFeed(_settings(server))
    await first.warmup()
    run_first = Collector(first)
    await run_first.wait_for(lambda: first.stock.connected)
    second = AlpacaFeed(_settings(server))
    await second.warmup()
    run_second = Collector(second)
    await asyncio.sleep(2.5)
    await run_second.stop()
    await run_first.stop()

    status = second.status()
    assert not status.connected
    assert "connection limit exceeded" in status.error
    # Backoff 0.2 → 0.4 → 0.8 → 1.0 s (jittered down to half): a handful of tries, not hundreds.
    assert 2 <= server.stats["refused_406"] <= 14
    assert first.status().connected is False  # closed by stop()


async def test_set_interest_moves_option_budget_to_requested_chain(server):
    feed = AlpacaFeed(_settings(server, symbols="AAPL,MSFT,NVDA", alpaca_option_budget=4))
    await feed.warmup()
    run = Collector(feed)
    await run.wait_for(lambda: feed.option.connected)

    def per_chain() -> dict[str, int]:
        roots = [c[:4] for c in feed.option.wanted["quotes"]]
        return {root: roots.count(root) for root in ("AAPL", "MSFT", "NVDA")}

    before = per_chain()
    await feed.set_interest({"NVDA", "ZZZZ"})
    after = per_chain()
    subscribed_at = len(run.batches)
    await run.wait_for(lambda: sum(
        int(np.sum(b.option_ticks.symbol_id == 2)) for b in run.batches[subscribed_at:]) >= 4)
    await run.stop()

    assert before == {"AAPL": 2, "MSFT": 1, "NVDA": 1}
    assert after == {"AAPL": 1, "MSFT": 1, "NVDA": 2}
    assert server.stats["option_subscribe"] >= 2
    assert feed.status().detail["not_in_universe"] == ["ZZZZ"]
    assert feed.symbols == ("AAPL", "MSFT", "NVDA")


async def test_interest_changes_do_not_cut_short_a_fatal_wait(server):
    feed = AlpacaFeed(_settings(server, alpaca_secret_key="wrong"))
    await feed.warmup()
    run = Collector(feed)
    await run.wait_for(lambda: feed.stock.fatal)

    for _ in range(5):
        await feed.set_interest({"AAPL"})
        await feed.set_interest(set())
        await asyncio.sleep(0.1)
    await run.stop()

    assert server.stats["refused_402"] == 1
