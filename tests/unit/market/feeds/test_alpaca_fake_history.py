"""The fake Alpaca server's historical side: rate gate, option bars, past listings."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from market.feeds.alpaca_fake_history import (
    RateGate,
    expiration_of,
    listed_expirations,
    option_bar,
    option_bar_rows,
    traded,
)


def test_gate_refuses_injected_429s_with_their_headers_then_admits():
    gate = RateGate()
    gate.throttle_next(1, retry_after_s=2.5)
    gate.throttle_next(1, retry_after_s=None)

    first, second, third = gate.check(), gate.check(), gate.check()

    assert first is not None
    assert first["Retry-After"] == "2.5"
    assert second is not None
    assert "Retry-After" not in second
    assert int(second["X-RateLimit-Reset"]) >= time.time()
    assert third is None
    assert gate.refused == 2


def test_gate_enforces_a_sliding_window():
    gate = RateGate()
    gate.limit = (3, 0.2)

    answers = [gate.check() for _ in range(4)]
    time.sleep(0.25)

    assert answers[:3] == [None, None, None]
    assert answers[3] is not None
    assert answers[3]["X-RateLimit-Remaining"] == "0"
    assert gate.check() is None  # the window moved on


def test_option_bar_rows_skip_untraded_minutes_and_minutes_after_expiry():
    contract = "XYZ250606C00100000"
    expiry_close = int(datetime(2025, 6, 6, 20, tzinfo=UTC).timestamp()) // 60
    minutes = range(expiry_close - 100, expiry_close + 100)

    rows = option_bar_rows([contract], minutes)

    assert rows == [(contract, m) for m in minutes if m < expiry_close and traded(contract, m)]
    assert 50 < len(rows) < 100  # about three minutes in four
    assert expiration_of(contract) == date(2025, 6, 6)


def test_option_bar_opens_and_closes_at_the_quote_mids():
    def price(contract: str, minute: float) -> tuple[float, float]:
        return minute / 100 - 0.05, minute / 100 + 0.05

    bar = option_bar(price, "XYZ250606C00100000", 1_000)

    assert bar["o"] == pytest.approx(10.0)
    assert bar["c"] == pytest.approx(10.01)
    assert bar["l"] <= min(bar["o"], bar["c"])
    assert bar["h"] >= max(bar["o"], bar["c"])


def test_listed_expirations_are_the_fridays_in_range():
    fridays = listed_expirations(date(2025, 6, 2), date(2025, 6, 20))

    assert fridays == [date(2025, 6, 6), date(2025, 6, 13), date(2025, 6, 20)]
