"""Query expansion: a named metric brings its statement line items into the query."""

from __future__ import annotations

import re

import pytest

from rag.glossary import METRIC_TERMS, expand_query


@pytest.mark.parametrize(("question", "term"), [
    ("What is Apple's quick ratio in FY2024?", "total current liabilities"),
    ("3M acid-test ratio", "receivables"),
    ("How did EBITDA change?", "depreciation and amortization"),
    ("What was capital expenditure in 2022?", "purchases of property plant and equipment"),
    ("Is the company's ROE above 20%?", "shareholders equity"),
])
def test_named_metric_adds_its_statement_terms_after_the_question(question: str,
                                                                   term: str) -> None:
    expanded = expand_query(question)

    assert expanded.startswith(question + " ")
    assert term in expanded


def test_question_without_a_metric_is_unchanged() -> None:
    assert expand_query("Who is the chief executive?") == "Who is the chief executive?"


def test_whole_word_metrics_do_not_match_inside_other_words() -> None:
    # "ebit" is a whole word only; "roe" must not match "heroes"
    assert expand_query("heroes of the debit card") == "heroes of the debit card"


def test_every_pattern_compiles_and_names_some_terms() -> None:
    for pattern, terms in METRIC_TERMS.items():
        re.compile(pattern)
        assert terms.strip() == terms, pattern
        assert len(terms.split()) >= 2, pattern
