"""Statements about the option chain: each figure is the data's, for the expiry it names."""

from __future__ import annotations

import math

import pytest

from rag.answers.facts import SymbolData, Writer
from rag.answers.intents import resolve_horizon
from rag.answers.options import TOPICS
from tests.unit.rag.answers.snapshot import assert_topic_states_the_data, full_data

TODAY = full_data().as_of().date()


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_every_figure_is_the_value_its_source_names_and_is_shown(topic: str) -> None:
    assert_topic_states_the_data(TOPICS[topic], topic)


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_without_a_chain_each_topic_says_it_is_not_available(topic: str) -> None:
    statement = TOPICS[topic](Writer(SymbolData("AAPL", {"price": 189.37})))

    assert statement.text.endswith("is not available.")
    assert statement.quantities == []


def test_expected_move_is_spot_times_iv_times_root_time_for_the_asked_expiry() -> None:
    data = full_data()
    w = Writer(data, resolve_horizon("by next Friday?", TODAY))

    statement = TOPICS["expected_move"](w)

    move = next(q for q in statement.quantities if q.name == "expected_move")
    assert w.expiry_used == "2026-12-11"
    assert move.value == pytest.approx(189.37 * 0.2318 * math.sqrt(10 / 365))
    assert "10 days out" in statement.text


def test_max_pain_says_where_it_stands_against_the_price() -> None:
    text = TOPICS["max_pain"](Writer(full_data())).text

    assert "is $190.00, $0.63 above the price of $189.37" in text


def test_unusual_activity_counts_contracts_in_words() -> None:
    data = full_data()

    one = TOPICS["unusual"](Writer(data)).text
    rows = data.options["unusual_activity"]
    two = TOPICS["unusual"](Writer(SymbolData("AAPL", data.market, {
        **data.options, "unusual_activity": rows * 2}))).text

    assert one.startswith("1 AAPL contract show")
    assert two.startswith("2 AAPL contracts show")
