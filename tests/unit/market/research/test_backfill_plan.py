"""Request planning, bar checks and the finished-day ledger of API backfills."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from market.research.backfill_plan import (
    DayLedger,
    bars_frame,
    clean_bars,
    day_is_over,
    plan_units,
    weekdays,
)

DAYS = weekdays(date(2025, 6, 2), date(2025, 6, 13))  # two weeks: ten weekdays


def test_weekdays_skip_weekends():
    assert len(DAYS) == 10
    assert all(d.weekday() < 5 for d in DAYS)


def test_plan_covers_each_missing_pair_once_within_the_request_size():
    missing = {"AAPL": DAYS, "MSFT": DAYS, "SPY": DAYS[:3] + DAYS[5:], "QQQ": [DAYS[4]]}

    units = plan_units(missing, DAYS, symbol_days=4)

    pairs = [(s, d) for u in units for s in u.symbols for d in u.days]
    assert sorted(pairs) == sorted((s, d) for s, ds in missing.items() for d in ds)
    assert all(len(u.symbols) * len(u.days) <= 4 for u in units)
    for unit in units:  # consecutive trading days only
        index = [DAYS.index(d) for d in unit.days]
        assert index == list(range(index[0], index[0] + len(index)))


def test_plan_shares_short_runs_between_symbols():
    units = plan_units({s: [DAYS[-1]] for s in ("A", "B", "C", "D", "E")}, DAYS, symbol_days=2)

    assert [len(u.symbols) for u in units] == [2, 2, 1]


def test_unit_bounds_are_new_york_midnights():
    unit = plan_units({"A": DAYS[:1]}, DAYS, symbol_days=1)[0]

    start, end = unit.bounds()

    assert start == datetime(2025, 6, 2, 4, 0, tzinfo=UTC)  # EDT is UTC-4
    assert end == datetime(2025, 6, 3, 4, 0, tzinfo=UTC)


def test_a_day_is_over_only_after_new_york_midnight_and_the_delay():
    day = date(2025, 6, 2)
    assert not day_is_over(day, datetime(2025, 6, 3, 4, 10, tzinfo=UTC))
    assert day_is_over(day, datetime(2025, 6, 3, 4, 30, tzinfo=UTC))


def _bar(t: str, o: float = 10.0, h: float = 11.0, low: float = 9.0, c: float = 10.5,
         v: float = 100.0) -> dict[str, object]:
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v}


def test_clean_bars_counts_each_reason_and_keeps_the_session():
    raw = {"AAPL": [
        _bar("2025-06-02T13:30:00Z"),                      # 09:30 New York: kept
        _bar("2025-06-02T13:31:00Z", h=8.0),                # high below low
        _bar("2025-06-02T13:32:00Z", o=-1.0),               # negative price
        _bar("2025-06-02T13:33:00Z", c=math.inf),           # not finite
        _bar("2025-06-02T13:34:00Z", v=-5.0),               # negative volume
        _bar("2025-06-02T13:30:00Z", c=10.6),               # the same minute again
        _bar("not a time"),
        _bar("2025-06-02T12:00:00Z"),                       # 08:00: pre-market, left out
        _bar("2025-06-01T15:00:00Z"),                       # a Sunday: not asked for
        _bar("2025-06-03T15:00:00Z"),                       # after the window
    ]}
    start, end = datetime(2025, 6, 1, 4, tzinfo=UTC), datetime(2025, 6, 3, 4, tzinfo=UTC)

    kept, dropped = clean_bars(bars_frame(raw), start, end, days=[date(2025, 6, 2)],
                               regular_hours=True)

    assert kept["close"].to_list() == [10.5]
    assert dict(dropped) == {"bad_range": 1, "bad_price": 2, "bad_volume": 1, "duplicate": 1,
                             "bad_time": 2}


def test_clean_bars_extended_hours_keeps_pre_market():
    raw = {"AAPL": [_bar("2025-06-02T12:00:00Z"), _bar("2025-06-02T13:30:00Z")]}
    start, end = datetime(2025, 6, 2, 4, tzinfo=UTC), datetime(2025, 6, 3, 4, tzinfo=UTC)

    kept, _ = clean_bars(bars_frame(raw), start, end, days=[date(2025, 6, 2)],
                         regular_hours=False)

    assert kept.height == 2


def test_ledger_ignores_a_torn_line_and_refuses_other_settings(tmp_path):
    ledger = DayLedger(tmp_path, "alpaca", {"feed": "iex"})
    ledger.mark("AAPL", [(DAYS[0], 390), (DAYS[1], 0)])
    with (tmp_path / "_backfill" / "alpaca" / "AAPL.days").open("a") as handle:
        handle.write("2025-06-0")  # a line no reader can use

    assert DayLedger(tmp_path, "alpaca", {"feed": "iex"}).done("AAPL") == {DAYS[0], DAYS[1]}
    with pytest.raises(ValueError, match="use another lake"):
        DayLedger(tmp_path, "alpaca", {"feed": "sip"})


def test_malformed_bar_json_is_counted_not_fatal():
    raw = {"AAPL": ["not an object", _bar("2025-06-02T13:30:00Z", o="abc"),  # type: ignore[arg-type]
                    {"t": 5}, _bar("2025-06-02T13:31:00Z")]}
    start, end = datetime(2025, 6, 2, 4, tzinfo=UTC), datetime(2025, 6, 3, 4, tzinfo=UTC)

    kept, dropped = clean_bars(bars_frame(raw), start, end, days=[date(2025, 6, 2)],
                               regular_hours=True)

    assert kept.height == 1
    assert dict(dropped) == {"bad_time": 2, "bad_price": 1}


def test_ledger_on_an_object_store_keeps_every_mark():
    import pyarrow.fs as pafs

    from core.storage import Storage

    lake = Storage("bucket/lake", filesystem=pafs._MockFileSystem())
    ledger = DayLedger(lake, "alpaca", {"feed": "iex"})

    ledger.mark("AAPL", [(DAYS[0], 390)])
    ledger.mark("AAPL", [(DAYS[1], 390), (DAYS[2], 0)])

    assert DayLedger(lake, "alpaca", {"feed": "iex"}).done("AAPL") == set(DAYS[:3])
    assert lake.read_text("_backfill/alpaca/AAPL.days").splitlines() == [
        "2025-06-02 390", "2025-06-03 390", "2025-06-04 0"]
