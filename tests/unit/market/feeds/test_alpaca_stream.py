"""market.feeds.alpaca_stream: reconnect backoff (no network; the stream itself runs against
the fake server in tests/integration/test_alpaca_feed.py)."""

from __future__ import annotations

import asyncio
import random

from market.feeds.alpaca_stream import backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_caps():
    rng = random.Random(1)
    delays = [backoff_delay(a, 1.0, 30.0, rng) for a in range(1, 9)]

    for attempt, delay in enumerate(delays, start=1):
        cap = min(30.0, 2 ** (attempt - 1))
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays}) == len(delays)


async def test_reconnect_backfill_waits_for_the_subscription_ack():
    # Backfilling before the server applies the subscription could miss a minute that
    # closes in between: neither in the REST answer nor streamed.
    from market.feeds.alpaca_stream import StreamRunner

    gaps: list[int] = []

    async def on_reconnect(gap_start_ns: int) -> None:
        gaps.append(gap_start_ns)

    runner = StreamRunner("stock", None, lambda message: True,  # type: ignore[arg-type]
                          on_reconnect=on_reconnect)
    runner._gap_to_fill = 123

    assert runner._control({"T": "success", "msg": "authenticated"})
    await asyncio.sleep(0)
    assert gaps == []

    assert runner._control({"T": "subscription", "bars": ["AAPL"]})
    await asyncio.sleep(0)
    assert gaps == [123]

    assert runner._control({"T": "subscription", "bars": ["AAPL"]})  # once per reconnect
    await asyncio.sleep(0)
    assert gaps == [123]
