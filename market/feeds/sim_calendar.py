"""Trading calendar for the simulator: New York sessions, volume profile, expirations.

The regular session is 09:30-16:00 America/New_York on weekdays. Exchange
holidays are not modelled (every weekday trades); the simulator only needs a
plausible calendar, not the exchange's.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from market.feeds.base import F64, NS_PER_MINUTE, NS_PER_SECOND

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_MINUTES = 390
SESSION_SECONDS = SESSION_MINUTES * 60
TRADING_DAYS_PER_YEAR = 252
# Seconds of regular trading in a year: the simulator's clock for annualised volatility.
TRADING_SECONDS_PER_YEAR = TRADING_DAYS_PER_YEAR * SESSION_SECONDS

# U-shaped intraday activity: base + opening burst + closing burst, over the
# session fraction x in [0, 1]; normalised so its mean over the session is 1.
_BASE, _OPEN_AMP, _OPEN_DECAY, _CLOSE_AMP, _CLOSE_DECAY = 1.0, 2.2, 0.06, 2.0, 0.05


def _raw_profile_integral(x: float) -> float:
    return (
        _BASE * x
        - _OPEN_AMP * _OPEN_DECAY * math.exp(-x / _OPEN_DECAY)
        + _CLOSE_AMP * _CLOSE_DECAY * math.exp(-(1.0 - x) / _CLOSE_DECAY)
    )


_PROFILE_MEAN = _raw_profile_integral(1.0) - _raw_profile_integral(0.0)


def volume_profile(x: F64 | float) -> F64:
    """Return the activity multiplier at session fraction ``x`` (mean 1 over [0, 1])."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    raw = (
        _BASE
        + _OPEN_AMP * np.exp(-x / _OPEN_DECAY)
        + _CLOSE_AMP * np.exp(-(1.0 - x) / _CLOSE_DECAY)
    )
    return np.asarray(raw / _PROFILE_MEAN, np.float64)


def is_trading_day(day: date) -> bool:
    """Return whether ``day`` has a regular session (weekdays; holidays are not modelled)."""
    return day.weekday() < 5


def session_bounds_ns(day: date) -> tuple[int, int]:
    """Return the regular session's open and close of ``day`` in UTC nanoseconds."""
    opening = datetime.combine(day, SESSION_OPEN, tzinfo=NEW_YORK)
    start = int(opening.timestamp()) * NS_PER_SECOND
    return start, start + SESSION_SECONDS * NS_PER_SECOND


def new_york_date(ts_ns: int) -> date:
    """Return the New York calendar date at ``ts_ns`` (UTC nanoseconds)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=NEW_YORK).date()


def session_fraction(ts_ns: int) -> float | None:
    """Return how far into the regular session ``ts_ns`` is (0..1), None outside it."""
    day = new_york_date(ts_ns)
    if not is_trading_day(day):
        return None
    start, end = session_bounds_ns(day)
    if start <= ts_ns < end:
        return (ts_ns - start) / (end - start)
    return None


def recent_sessions(now_ns: int, count: int) -> list[date]:
    """Return the last ``count`` trading days whose session opened at or before ``now_ns``."""
    day = new_york_date(now_ns)
    days: list[date] = []
    while len(days) < count:
        if is_trading_day(day) and session_bounds_ns(day)[0] <= now_ns:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def session_minutes_ns(day: date, now_ns: int) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Return the starts of ``day``'s 1-minute bars that are complete at ``now_ns``."""
    start, _ = session_bounds_ns(day)
    starts = start + np.arange(SESSION_MINUTES, dtype=np.int64) * NS_PER_MINUTE
    return starts[starts + NS_PER_MINUTE <= now_ns]


def third_friday(year: int, month: int) -> date:
    """Return the third Friday of a month (standard monthly option expiration)."""
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def option_expirations(today: date, weeklies: int = 3) -> list[tuple[date, bool]]:
    """Return ``(expiration, is_monthly)`` listed on ``today``, nearest first.

    The next ``weeklies`` Fridays after today, then the monthlies (third Friday)
    one, two, three, six and twelve months out — seven or eight expirations from
    a few days to about a year. All expire after ``today``.
    """
    monthly: set[date] = set()
    for months in (0, 1, 2, 3, 6, 12):
        year, month = _add_months(today.year, today.month, months)
        friday = third_friday(year, month)
        if friday > today:
            monthly.add(friday)
    first_friday = today + timedelta(days=(4 - today.weekday()) % 7 or 7)
    weekly = {first_friday + timedelta(weeks=i) for i in range(weeklies)}
    listed = sorted(weekly | monthly)
    # Keep the near monthlies plus the quarter/half/one-year ones: at most 8 in all.
    while len(listed) > 8:
        spare = [d for d in listed[weeklies:-3] if d not in weekly]
        if not spare:
            break
        listed.remove(spare[-1])
    return [(d, d in monthly) for d in listed]
