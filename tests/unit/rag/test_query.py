"""Symbol and intent extraction from messages and context."""

from __future__ import annotations

import pytest

from rag.query import classify_intent, extract_symbols, plan_query

TRACKED = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ", "AMZN", "META")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("What do AAPL's options say about next week?", ("AAPL",)),
        ("compare $msft and $nvda", ("MSFT", "NVDA")),
        ("How is Apple doing versus Tesla?", ("AAPL", "TSLA")),
        ("Is the S&P 500 overbought?", ("SPY",)),
        ("I think IT IS A good day", ()),  # upper-case words that are not tracked tickers
        ("what about meta?", ()),  # lower-case 'meta' is a word, not a ticker
        ("Facebook earnings", ("META",)),
    ],
)
def test_extract_symbols_finds_tracked_tickers_and_names(message: str, expected: tuple[str, ...]
                                                         ) -> None:
    assert extract_symbols(message, TRACKED) == expected


def test_extract_symbols_adds_context_symbol() -> None:
    assert extract_symbols("and the RSI?", TRACKED, {"symbol": "tsla"}) == ("TSLA",)


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("What do AAPL's options say about next week?", "options"),
        ("Is the RSI overbought and MACD turning?", "technical"),
        ("What was revenue and gross margin last year?", "fundamental"),
        ("Any news today?", "news"),
        ("Hello there", "general"),
    ],
)
def test_classify_intent(message: str, intent: str) -> None:
    assert classify_intent(message) == intent


def test_plan_follow_up_reuses_previous_symbols_and_filters_by_ticker() -> None:
    plan = plan_query("and its RSI?", TRACKED, previous_symbols=("NVDA",))

    assert plan.symbols == ("NVDA",)
    assert plan.filters == {"ticker": "NVDA"}
    assert plan.search_query.startswith("NVDA")


def test_plan_with_two_symbols_searches_unfiltered() -> None:
    plan = plan_query("AAPL vs MSFT margins", TRACKED)

    assert plan.filters == {}
