"""rag.pdf: text per page from real PDFs; bad documents refused with a reason."""

from __future__ import annotations

import pytest

from rag.pdf import BadDocument, content_hash, document_id_for, extract_pdf
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
