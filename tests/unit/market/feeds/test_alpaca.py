"""market.feeds.alpaca: the US market's hours in New York time (no network; the feed runs
against the fake server in tests/integration/test_alpaca_feed.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from market.feeds.alpaca import us_market_open


@pytest.mark.parametrize(("moment", "expected"), [
    (datetime(2026, 11, 24, 14, 30, tzinfo=UTC), True),    # 09:30 New York, Tuesday
    (datetime(2026, 11, 24, 14, 29, tzinfo=UTC), False),
    (datetime(2026, 11, 24, 21, 0, tzinfo=UTC), False),    # 16:00 New York
    (datetime(2026, 7, 6, 13, 30, tzinfo=UTC), True),      # 09:30 EDT
    (datetime(2026, 11, 28, 16, 0, tzinfo=UTC), False),    # Saturday
])
def test_market_hours_follow_new_york_time(moment, expected):
    assert us_market_open(moment) is expected
