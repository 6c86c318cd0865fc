"""Numbers post-check: tolerant formatting, precision, percentages, flags and ratios."""

from __future__ import annotations

import pytest

from rag.grounding import FigureGuard, check_answer, extract_figures, resolve_citations

REFERENCE = (
    "AAPL price 189.23; volume 1,234,567; RSI 14 55.21; change % 0.5200; "
    "put call ratio 0.85; atm implied volatility 0.2432. Net sales were $391.0 billion."
)


@pytest.mark.parametrize(
    "answer",
    [
        "AAPL trades at 189.23.",
        "AAPL trades at $189.2.",  # rounded to the shown precision
        "Volume was 1234567 shares.",
        "Volume was 1.23M shares.",
        "Volume was 1,234,567.0 shares.",
        "RSI is 55.2.",
        "Implied volatility is 24.32%.",  # fraction shown as a percentage
        "It rose 0.52% today.",
        "Sales were $391 billion.",
        "Sales were $391.0bn.",
        "Put/call ratio is 0.850.",
    ],
)
def test_figures_present_in_reference_are_grounded(answer: str) -> None:
    report = check_answer(answer, REFERENCE)

    assert report.ungrounded == []
    assert report.ratio == 1.0


@pytest.mark.parametrize(
    "answer",
    ["AAPL trades at 190.", "RSI is 61.3.", "Volume was 2.5M.", "Implied volatility is 31%."],
)
def test_figures_absent_from_reference_are_flagged(answer: str) -> None:
    report = check_answer(answer, REFERENCE)

    assert report.total == 1
    assert report.ratio == 0.0
    assert "(unverified)" in report.text


def test_strip_mode_removes_ungrounded_figure_and_keeps_grounded_one() -> None:
    report = check_answer("Price 189.23, target 250.00.", REFERENCE, mode="strip")

    assert report.text == "Price 189.23, target [figure removed]."
    assert report.ratio == 0.5


def test_citation_markers_are_not_figures() -> None:
    figures = extract_figures("Sales grew [1] and margins rose [12].")

    assert figures == []


def test_answer_without_numbers_has_ratio_one() -> None:
    assert check_answer("No figures here.", REFERENCE).ratio == 1.0


def test_resolve_citations_drops_markers_for_missing_passages() -> None:
    text, cited = resolve_citations("A [2]. B [7]. C [1][2].", passage_count=3)

    assert text == "A [2]. B . C [1][2]."
    assert cited == [2, 1]


def test_a_dotted_date_is_one_token_stripped_whole_unless_the_references_hold_it() -> None:
    # A small model wrote "10.10.2024"; stripping "10.10" alone used to leave ".2024" behind,
    # a new unverified figure, so what users got was not fully checked.
    stripped = check_answer("Filed 10.10.2024, price 189.23.", REFERENCE, "strip")
    held = check_answer("Filed 10.10.2024.", "Report dated 10.10.2024.")

    assert stripped.text == "Filed [figure removed], price 189.23."
    assert check_answer(stripped.text, REFERENCE, "report").ratio == 1.0
    assert [f.text for f in extract_figures("release 1.2.3 and 4.5")] == ["1.2.3", "4.5"]
    assert held.ratio == 1.0


def _first_refusal(guard: FigureGuard, pieces: list[str]) -> str | None:
    """Write ``pieces`` in turn (then an ending); return the text up to a refused piece."""
    text = ""
    for piece in [*pieces, " "]:
        if not guard.allows(text, piece):
            return text + piece
        text += piece
    return None


@pytest.mark.parametrize(
    "answer",
    [
        "AAPL trades at 189.23.",
        "AAPL trades at $189.2 now.",  # shown precision
        "Volume was 1,234,567 shares.",
        "Volume was 1234567 shares.",
        "RSI is 55.2.",
        "Implied volatility is 24.32%.",  # fraction shown as a percentage
        "It rose 0.52% today.",
        "Put/call ratio is 0.85 [2].",  # a citation is not a figure
    ],
)
def test_guard_lets_a_grounded_answer_be_written_character_by_character(answer: str) -> None:
    guard = FigureGuard(REFERENCE)

    assert _first_refusal(guard, list(answer)) is None
    assert check_answer(answer, REFERENCE).ratio == 1.0


@pytest.mark.parametrize(
    ("pieces", "refused"),
    [
        (["AAPL trades at ", "1", "8", "7"], "AAPL trades at 187"),  # leaves every figure
        (["AAPL trades at ", "1", "8", " now"], "AAPL trades at 18 now"),  # ends ungrounded
        (["RSI is ", "7", "0"], "RSI is 7"),
        (["Sales were $", "3", "9", "1", " million"], "Sales were $391 million"),  # scale
        (["up ", "3", "%"], "up 3%"),
        (["RSI is ", "5", ".", "2"], "RSI is 5."),  # no reference figure goes on "5."
        (["Filed ", "1", "0", ".", "1", "0", ".", "2", "0", "2", "4"], "Filed 10"),
    ],
)
def test_guard_refuses_the_piece_that_makes_a_figure_ungrounded(
        pieces: list[str], refused: str) -> None:
    guard = FigureGuard(REFERENCE)

    assert _first_refusal(guard, pieces) == refused
    assert check_answer(refused, REFERENCE, "report").ratio < 1.0


def test_guard_accepts_a_scale_word_that_keeps_the_figure_grounded() -> None:
    guard = FigureGuard(REFERENCE)

    assert guard.allows("Sales were $391", " billion")
    assert not guard.allows("Sales were $391", " million")


def test_guard_chooses_the_first_allowed_piece_and_falls_back_to_the_best() -> None:
    guard = FigureGuard(REFERENCE)

    assert guard.choose("AAPL trades at ", ["7", "x", "1"]) == 1  # "x" writes no figure
    assert guard.choose("AAPL trades at 18", ["7", "6", "9"]) == 2
    assert guard.choose("AAPL trades at 18", ["7", "6"]) == 0  # none allowed: the best
