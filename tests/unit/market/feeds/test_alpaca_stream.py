"""market.feeds.alpaca_stream: reconnect backoff (no network; the stream itself runs against
the fake server in tests/integration/test_alpaca_feed.py)."""

from __future__ import annotations

import random

from market.feeds.alpaca_stream import backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_caps():
    rng = random.Random(1)
    delays = [backoff_delay(a, 1.0, 30.0, rng) for a in range(1, 9)]

    for attempt, delay in enumerate(delays, start=1):
        cap = min(30.0, 2 ** (attempt - 1))
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays}) == len(delays)
