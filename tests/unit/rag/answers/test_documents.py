"""Extractive document answers: the sentences or rows that answer, quoted as printed."""

from __future__ import annotations

from rag.answers.documents import extract_answer

SOURCES = [
    {"title": "Apple 10-K 2024", "page": 21, "text": (
        "Products and services performance. Total net sales were $391.0 billion in fiscal "
        "2024. iPhone net sales were $201.2 billion, 51% of total net sales.")},
    {"title": "Amcor 2023 10-K", "page": 49, "text": (
        "Consolidated Balance Sheets\nCash and cash equivalents $ 689 $ 775\n"
        "Trade receivables, net 1,875 1,935\nTotal current assets 5,308 5,853")},
    {"title": "Options Primer", "page": 3, "text": (
        "A put/call ratio above 1 means more puts than calls traded. Implied volatility "
        "measures the expected move.")},
]


def test_quotes_the_sentence_with_the_asked_figure_and_its_page() -> None:
    answer = extract_answer("What were Apple's total net sales in fiscal 2024?", SOURCES)
    assert answer.quotes[0].text == "Total net sales were $391.0 billion in fiscal 2024."
    assert answer.quotes[0].page == 21
    assert answer.cited[0] == 1
    assert ('Apple 10-K 2024, page 21: "Total net sales were $391.0 billion in fiscal 2024." '
            "[1]") in answer.text()


def test_quotes_a_table_row_as_printed() -> None:
    answer = extract_answer("What were Amcor's total current assets?", SOURCES)
    assert answer.quotes[0].text == "Total current assets 5,308 5,853"
    assert answer.quotes[0].n == 2


def test_definition_question_quotes_the_primer() -> None:
    answer = extract_answer("What does a put/call ratio above 1 mean?", SOURCES)
    assert answer.quotes[0].text.startswith("A put/call ratio above 1 means more puts")
    assert answer.quotes[0].n == 3


def test_nothing_relevant_quotes_nothing() -> None:
    assert extract_answer("Who won the football match?", SOURCES).text() == ""


def test_table_row_split_over_lines_is_quoted_with_its_figures() -> None:
    sources = [{"title": "Amcor 2023 10-K", "page": 49,
                "text": "Balance sheet\nTotal current assets\n5,308 \n5,853\nGoodwill\n5,366"}]
    answer = extract_answer("What were Amcor's total current assets?", sources)
    assert answer.quotes[0].text == "Total current assets 5,308"
