"""The simulator's calendar: weekly and monthly option expirations."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from market.feeds.sim_calendar import option_expirations, third_friday

MONDAY = date(2025, 11, 24)


@pytest.mark.parametrize("offset_days", range(0, 14))
def test_expirations_are_future_fridays_with_monthlies_on_third_fridays(offset_days: int) -> None:
    today = MONDAY + timedelta(days=offset_days)

    listed = option_expirations(today)

    days = [d for d, _ in listed]
    assert 6 <= len(listed) <= 8
    assert days == sorted(set(days))
    assert all(d.weekday() == 4 and d > today for d in days)
    assert days[0] - today <= timedelta(days=7)
    assert days[-1] - today >= timedelta(days=300)
    assert all(d == third_friday(d.year, d.month) for d, monthly in listed if monthly)
