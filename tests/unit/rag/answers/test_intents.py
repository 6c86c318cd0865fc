"""Symbols, topics and horizons of the questions people actually ask."""

from __future__ import annotations

from datetime import date

import pytest

from rag.answers.intents import pick_expiry, recognise, resolve_horizon, third_friday

TRACKED = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ", "AMZN", "META")
TUESDAY = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("question", "symbols", "topics"),
    [
        ("Is AAPL overbought, and what move do options imply by Friday?", ("AAPL",),
         ("rsi", "expected_move")),
        ("What do AAPL's options say about next week?", ("AAPL",),
         ("put_call", "expected_move", "max_pain")),
        ("how's apple doing today", ("AAPL",), ("price",)),
        ("nvda rsi vs tsla", ("NVDA", "TSLA"), ("rsi",)),
        ("Compare Microsoft and Nvidia momentum", ("MSFT", "NVDA"),
         ("rsi", "macd", "stochastic")),
        ("SPY calls vs puts", ("SPY",), ("put_call",)),
        ("change in open interest on QQQ", ("QQQ",), ("oi_change",)),
        ("Is TSLA volume above its usual level?", ("TSLA",), ("volume",)),
        ("What's the skew and term structure for the nasdaq 100?", ("QQQ",),
         ("skew", "term_structure")),
        ("Any candlestick patterns or support levels on amzn?", ("AMZN",),
         ("patterns", "levels")),
        ("What was Apple's revenue in fiscal 2024?", ("AAPL",), ("documents",)),
        ("gamma exposure and max pain for tesla", ("TSLA",), ("gamma", "max_pain")),
    ],
)
def test_recognise_finds_symbols_and_every_part(question: str, symbols: tuple[str, ...],
                                                topics: tuple[str, ...]) -> None:
    ask = recognise(question, TRACKED)
    assert ask.symbols == symbols
    assert ask.topics == topics


def test_recognise_without_a_topic_gives_an_overview_of_the_previous_symbol() -> None:
    ask = recognise("and what about now?", TRACKED, previous_symbols=("MSFT",))
    assert ask.symbols == ("MSFT",)
    assert ask.overview
    assert ask.needs_options()


def test_two_named_symbols_make_a_comparison() -> None:
    assert recognise("AAPL or MSFT: which is more overbought?", TRACKED).compare
    assert not recognise("Is AAPL overbought?", TRACKED).compare


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("move by Friday?", date(2026, 12, 4)),
        ("what about next week", date(2026, 12, 11)),  # the Friday of next week
        ("this week", date(2026, 12, 4)),
        ("tomorrow", date(2026, 12, 2)),
        ("in 10 days", date(2026, 12, 11)),
        ("over the next 2 weeks", date(2026, 12, 15)),
        ("by Dec 18", date(2026, 12, 18)),
        ("by November 20", date(2027, 11, 20)),  # a date already past means next year
        ("on 2027-01-15", date(2027, 1, 15)),
        ("next Friday", date(2026, 12, 11)),
        ("next month", date(2027, 1, 15)),  # third Friday of January 2027
    ],
)
def test_resolve_horizon_counts_from_the_market_date(question: str, expected: date) -> None:
    horizon = resolve_horizon(question, TUESDAY)
    assert horizon is not None
    assert horizon.target == expected


def test_resolve_horizon_on_friday_means_today() -> None:
    friday = date(2026, 12, 4)
    horizon = resolve_horizon("by Friday", friday)
    assert horizon is not None
    assert horizon.target == friday


def test_third_friday_matches_the_calendar() -> None:
    # Monthly expiries published by the exchanges (third Fridays).
    assert third_friday(2026, 12) == date(2026, 12, 18)
    assert third_friday(2027, 1) == date(2027, 1, 15)
    assert third_friday(2026, 5) == date(2026, 5, 15)


ROWS = [{"expiration": "2026-12-01", "days_to_expiry": 0, "atm_iv": 0.3},
        {"expiration": "2026-12-04", "days_to_expiry": 3, "atm_iv": None},
        {"expiration": "2026-12-11", "days_to_expiry": 10, "atm_iv": 0.21},
        {"expiration": "2026-12-18", "days_to_expiry": 17, "atm_iv": 0.22}]


def test_pick_expiry_takes_first_listed_on_or_after_the_horizon() -> None:
    horizon = resolve_horizon("by Friday", TUESDAY)
    row = pick_expiry(ROWS, horizon)
    assert row is not None
    assert row["expiration"] == "2026-12-04"
    with_iv = pick_expiry(ROWS, horizon, need="atm_iv")  # that expiry has no IV yet
    assert with_iv is not None
    assert with_iv["expiration"] == "2026-12-11"
    nearest = pick_expiry(ROWS, None)  # same-day expiry skipped
    assert nearest is not None
    assert nearest["expiration"] == "2026-12-04"
    late = pick_expiry(ROWS, resolve_horizon("by 2027-06-01", TUESDAY))
    assert late is not None
    assert late["expiration"] == "2026-12-18"
