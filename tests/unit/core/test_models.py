"""The contract's models: timestamps are aware UTC, unknown fields are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from core.models import MarketData, utc_now

NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def _market(**overrides: object) -> MarketData:
    values: dict[str, object] = {"symbol": "AAPL", "price": 189.37, "volume": 1000.0,
                                 "timestamp": datetime(2026, 12, 1, 15, 30, tzinfo=UTC),
                                 "indicators": {"rsi_14": 55.0, "macd": None}}
    return MarketData(**{**values, **overrides})


def test_an_offset_timestamp_is_stored_as_the_same_instant_in_utc() -> None:
    local = datetime(2026, 12, 1, 10, 30, tzinfo=NEW_YORK_WINTER)

    stored = _market(timestamp=local).timestamp

    assert stored == local
    assert stored.utcoffset() == timedelta(0)
    assert stored.hour == 15


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        _market(timestamp=datetime(2026, 12, 1, 15, 30))  # noqa: DTZ001 - the case refused


def test_an_unknown_field_is_refused_so_typos_do_not_pass_silently() -> None:
    with pytest.raises(ValidationError, match="extra"):
        _market(prcie=1.0)


def test_json_round_trip_keeps_every_field() -> None:
    original = _market(bid=189.3, ask=189.4)

    again = MarketData.model_validate_json(original.model_dump_json())

    assert again == original
    assert again.indicators["macd"] is None


def test_utc_now_is_aware_and_current() -> None:
    now = utc_now()
    assert now.tzinfo is not None
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5
