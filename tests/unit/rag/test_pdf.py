"""rag.pdf: text per page from real PDFs; bad documents refused with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from rag.pdf import (
    BadDocument,
    content_hash,
    document_id_for,
    extract_pdf,
    page_range_texts,
    page_texts,
)
from tests.unit.rag.kb_pdfs import blank_pdf, corrupt_pdf, encrypted_pdf, report_pdf


def test_extract_report_returns_one_text_per_page():
    extracted = extract_pdf(report_pdf(title="Acme annual report"))

    assert len(extracted.pages) == 3
    assert "sprocket shipments doubled" in extracted.pages[1]
    assert "patent lawsuit" in extracted.pages[2]
    assert extracted.pdf_title == "Acme annual report"


def test_same_bytes_give_same_document_id():
    data = report_pdf()

    assert document_id_for(content_hash(data)) == document_id_for(content_hash(bytes(data)))
    assert len(document_id_for(content_hash(data))) == 16


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, not a pdf at all", "not a PDF"),
        (corrupt_pdf(), "corrupt"),
        (encrypted_pdf(), "encrypted"),
        (blank_pdf(), "no extractable text"),
    ],
    ids=["empty", "not-pdf", "corrupt", "encrypted", "scanned"],
)
def test_bad_document_is_refused_with_reason(data, reason):
    with pytest.raises(BadDocument) as caught:
        extract_pdf(data)

    assert reason in caught.value.reason


def test_too_many_pages_is_refused():
    with pytest.raises(BadDocument, match="too large: 3 pages"):
        extract_pdf(report_pdf(), max_pages=2)


def test_too_many_bytes_is_refused():
    data = report_pdf()

    with pytest.raises(BadDocument, match="too large"):
        extract_pdf(data, max_bytes=len(data) - 1)


def test_pages_read_in_ranges_equal_the_page_loop():
    data = report_pdf([[f"Page {n} discusses segment {n} revenue."] for n in range(1, 8)])

    def by_ranges(reader: Any, pdf: bytes) -> list[str]:
        return page_texts(reader, 0, 3) + page_range_texts(pdf, 3, 5) + \
            page_range_texts(pdf, 5, len(reader.pages))

    expected = extract_pdf(data)
    split = extract_pdf(data, read_pages=by_ranges)

    assert split.pages == expected.pages
    assert len(split.pages) == 7
    assert "segment 4 revenue" in split.pages[3]


def test_page_reader_that_loses_pages_is_an_error():
    data = report_pdf()

    with pytest.raises(ValueError, match="3 pages"):
        extract_pdf(data, read_pages=lambda reader, pdf: page_texts(reader, 0, 2))
