"""One PDF to chunk rows: identity from the bytes, metadata, one row per chunk to embed."""

from __future__ import annotations

import hashlib

import pytest

from rag.documents import CHUNK_COLUMNS, process_document, rows_to_columns
from rag.pdf import BadDocument
from tests.unit.rag.kb_pdfs import corrupt_pdf, report_pdf

PDF = report_pdf()  # once: the PDF's creation time makes each call's bytes differ


@pytest.fixture(scope="module")
def document():
    return process_document(PDF, "s3://filings/ACME_2023_10K.pdf")


def test_identity_comes_from_the_bytes_not_the_name(document) -> None:
    again = process_document(PDF, "other-name.pdf")

    assert document.content_hash == again.content_hash == hashlib.sha256(PDF).hexdigest()
    assert document.document_id == again.document_id
    assert document.page_count == 3


def test_every_row_is_a_chunk_with_its_page_and_the_header_to_embed(document) -> None:
    rows = document.rows()

    assert [row["ordinal"] for row in rows] == list(range(len(document.chunks)))
    assert {row["page"] for row in rows} == {1, 2, 3}
    for row, chunk in zip(rows, document.chunks, strict=True):
        assert set(row) == set(CHUNK_COLUMNS)
        assert row["chunk_id"] == f"{document.document_id}:{chunk.ordinal}"
        assert row["text"] == chunk.text
        assert row["embed_text"] == f"{document.metadata.title}\n{chunk.text}"
        assert row["uri"] == "s3://filings/ACME_2023_10K.pdf"


def test_the_catalogue_entry_counts_pages_and_chunks(document) -> None:
    record = document.record()

    assert (record["pages"], record["chunks"]) == (3, len(document.chunks))
    assert record["document_id"] == document.document_id
    assert record["fiscal_year"] == document.metadata.fiscal_year


def test_rows_become_columns_in_the_declared_order(document) -> None:
    rows = document.rows()

    columns = rows_to_columns(rows)

    assert tuple(columns) == CHUNK_COLUMNS
    assert all(len(values) == len(rows) for values in columns.values())
    assert columns["text"] == [row["text"] for row in rows]


def _words(document) -> list[str]:
    return " ".join(chunk.text for chunk in document.chunks).split()


def test_smaller_chunks_give_more_of_them_with_the_same_text() -> None:
    coarse = process_document(PDF, "a.pdf", max_tokens=400, overlap_tokens=0)
    fine = process_document(PDF, "a.pdf", max_tokens=12, overlap_tokens=0)

    assert len(fine.chunks) > len(coarse.chunks)
    assert _words(fine) == _words(coarse)


def test_an_unreadable_pdf_is_refused_with_its_reason() -> None:
    with pytest.raises(BadDocument):
        process_document(corrupt_pdf(), "broken.pdf")
