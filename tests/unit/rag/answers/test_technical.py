"""Statements about the quote and indicators: each figure is the data's, and says what it means."""

from __future__ import annotations

import pytest

from rag.answers.facts import SymbolData, Writer
from rag.answers.technical import TOPICS
from tests.unit.rag.answers.snapshot import assert_topic_states_the_data, full_data


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_every_figure_is_the_value_its_source_names_and_is_shown(topic: str) -> None:
    assert_topic_states_the_data(TOPICS[topic], topic)


@pytest.mark.parametrize("topic", sorted(set(TOPICS) - {"patterns"}))
def test_without_data_each_topic_says_it_is_not_available(topic: str) -> None:
    statement = TOPICS[topic](Writer(SymbolData("AAPL", {"indicators": {}})))

    assert statement.text.endswith("is not available.")
    assert statement.quantities == []


@pytest.mark.parametrize(("rsi", "meaning"), [
    (70.0, "overbought"), (30.0, "oversold"), (50.0, "neither overbought nor oversold"),
])
def test_rsi_on_a_line_counts_as_beyond_it(rsi: float, meaning: str) -> None:
    data = SymbolData("AAPL", {"indicators": {"rsi_14": rsi}})

    text = TOPICS["rsi"](Writer(data)).text

    assert text.endswith(f": {meaning}.")


@pytest.mark.parametrize(("price", "where"), [(190.0, "above"), (188.0, "below"),
                                              (188.9, "at")])
def test_vwap_side_and_distance(price: float, where: str) -> None:
    data = SymbolData("AAPL", {"price": price, "indicators": {"vwap": 188.9}})

    text = TOPICS["vwap"](Writer(data)).text

    assert f"is {where} its session VWAP of $188.90 by {abs(price / 188.9 - 1) * 100:.2f}%" in text


def test_levels_and_patterns_count_in_words() -> None:
    data = full_data()

    levels = TOPICS["levels"](Writer(data)).text
    patterns = TOPICS["patterns"](Writer(data)).text

    assert "support at $187.50 (3 touches)" in levels
    assert "resistance at $192.00 (1 touch)" in levels
    assert "bullish engulfing (bullish, 2 bars ago)" in patterns
