"""The answers' shared pieces: number checks, formatting, comparisons, and the Writer."""

from __future__ import annotations

import math

import pytest

from rag.answers.facts import (
    SymbolData,
    Writer,
    big_money,
    fixed,
    fraction_pct,
    long_date,
    money,
    number,
    plural,
    side,
    signed,
    whole,
    zone,
)


@pytest.mark.parametrize("value", [True, "1.5", None, math.nan, math.inf, [1]])
def test_number_refuses_non_numbers_and_non_finite_values(value: object) -> None:
    assert number(value) is None


def test_number_accepts_ints_and_floats() -> None:
    assert number(3) == 3.0
    assert number(-0.25) == -0.25


@pytest.mark.parametrize(("value", "text"), [
    (1234.5, "$1,234.50"), (-1.2, "-$1.20"), (0.0, "$0.00"),
])
def test_money_has_two_decimals_and_a_leading_sign(value: float, text: str) -> None:
    assert money(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (2.5e9, "+$2.50 billion"), (-6.0e8, "-$600.00 million"), (999_999.0, "+$999,999"),
])
def test_big_money_scales_to_millions_and_billions(value: float, text: str) -> None:
    assert big_money(value) == text


def test_fractions_fixed_whole_and_signed() -> None:
    assert fraction_pct(0.2431) == "24.31%"
    assert fixed(1234.5678) == "1,234.57"
    assert whole(1234567.0) == "1,234,567"
    assert signed("5", 5.0) == "+5"
    assert signed("-5", -5.0) == "-5"
    assert signed("0", 0.0) == "+0"


def test_long_date_names_the_weekday_and_passes_other_text_through() -> None:
    assert long_date("2026-12-04") == "Friday 4 December 2026"
    assert long_date("next week") == "next week"


@pytest.mark.parametrize(("value", "reference", "expected"), [
    (2.0, 1.0, "above"), (1.0, 2.0, "below"), (1.5, 1.5, "at"),
])
def test_side_compares_with_the_reference(value: float, reference: float, expected: str) -> None:
    assert side(value, reference) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (70.0, "above"), (85.0, "above"), (30.0, "below"), (10.0, "below"), (50.0, "between"),
    (30.01, "between"), (69.99, "between"),
])
def test_zone_counts_the_lines_themselves_as_outside(value: float, expected: str) -> None:
    assert zone(value, 30.0, 70.0) == expected


def test_plural_takes_the_count() -> None:
    assert [plural(n, "day") for n in (0, 1, 2)] == ["days", "day", "days"]
    assert plural(3, "touch", "touches") == "touches"
    assert plural(1, "touch", "touches") == "touch"


def test_writer_records_quantities_with_their_sources_per_statement() -> None:
    data = SymbolData("AAPL", {"price": 189.37, "indicators": {"rsi_14": 72.4}})
    w = Writer(data)

    price = w.market_q("price", 189.37, "$189.37")
    rsi = w.indicator_q("rsi_14", 72.4, "72.4", ("rsi",))
    first = w.done("price", f"{price} {rsi}")
    second = w.done("rsi", "nothing")

    assert [(q.name, q.source, q.labels) for q in first.quantities] == [
        ("price", "market.price", ("price",)), ("rsi_14", "market.indicators.rsi_14", ("rsi",))]
    assert second.quantities == []
    assert w.indicator("rsi_14") == 72.4
    assert w.number("missing") is None


def test_missing_statement_drops_the_quantities_recorded_for_it() -> None:
    w = Writer(SymbolData("MSFT", {}))
    w.market_q("price", 1.0, "$1.00")

    statement = w.missing("price", "the last price")

    assert statement.text == "MSFT: the last price is not available."
    assert statement.quantities == []
    assert w.done("next", "x").quantities == []


def test_as_of_reads_the_timestamp_in_utc_or_none() -> None:
    assert SymbolData("A", {"timestamp": "2026-12-01T15:30:00Z"}).as_of().isoformat() == (
        "2026-12-01T15:30:00+00:00")
    assert SymbolData("A", {"timestamp": "yesterday"}).as_of() is None
    assert SymbolData("A", {}).as_of() is None
