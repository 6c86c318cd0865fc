"""rag.clean on generated PDFs with known heads, footers, hyphenation and a table."""

from __future__ import annotations

from rag.clean import clean_pages, join_hyphenation, merge_table_cells, normalize_characters
from rag.pdf import extract_pdf
from tests.unit.rag.kb_pdfs import FOOTER_NOTE, HEADER, report_pdf


def _cleaned() -> list[str]:
    return clean_pages(extract_pdf(report_pdf()).pages)


def test_running_header_and_footer_are_removed_from_every_page():
    pages = _cleaned()

    for page in pages:
        assert HEADER not in page
        assert FOOTER_NOTE not in page


def test_page_numbers_are_removed():
    pages = _cleaned()

    for page in pages:
        assert "Page " not in page
        assert not page.rstrip().splitlines()[-1].strip().isdigit()


def test_hyphenated_word_is_joined():
    first = _cleaned()[0]

    assert "strong financial results" in first
    assert "finan-" not in first


def test_table_rows_stay_in_reading_order():
    lines = _cleaned()[1].splitlines()

    assert "Net sales 3,226.8 2,729.4" in lines
    assert "Gross profit 1,210.5 1,020.1" in lines


def test_body_text_is_kept():
    pages = _cleaned()

    assert "Management expects the flagship widget line to keep growing next year." in pages[0]
    assert "The company believes the claims are without merit." in pages[2]


def test_cells_split_one_per_line_are_merged_into_their_row():
    raw = ["Cash and cash equivalents", "$", "689", "$", "775", "Trade payables", "2,690", "(3.9%)"]

    assert merge_table_cells(raw) == [
        "Cash and cash equivalents $ 689 $ 775",
        "Trade payables 2,690 (3.9%)",
    ]


def test_ligatures_quotes_and_spaces_are_normalised():
    assert normalize_characters("\ufb01nancial \u201ce\ufb03cient\u201d\u00a0gain") == (
        'financial "efficient" gain'
    )


def test_compound_hyphen_at_line_end_is_not_a_broken_word():
    assert join_hyphenation("year-to-\ndate") == "year-to-\ndate"
    assert join_hyphenation("manage-\nment") == "management"
