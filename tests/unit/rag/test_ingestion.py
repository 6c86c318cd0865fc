"""The in-process ingest loop: folders expanded, bad and duplicate files reported, one publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.embedder import Embedder
from rag.index import IndexStore
from rag.ingestion import IngestSummary, discover_pdfs, ingest_document, ingest_files, screen_files
from rag.pdf import BadDocument, content_hash
from tests.unit.rag.kb_pdfs import HashingModel, blank_pdf, corrupt_pdf, report_pdf
from tests.unit.rag.kb_pdfs import write as write_file

PDF = report_pdf()  # once: the PDF's creation time makes each call's bytes differ


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file(path, data)


def test_folders_expand_to_their_pdfs_once_each(tmp_path: Path) -> None:
    a = write(tmp_path / "docs" / "a.pdf", b"%PDF-1")
    b = write(tmp_path / "docs" / "sub" / "B.PDF", b"%PDF-2")
    write(tmp_path / "docs" / "notes.txt", b"not a pdf")
    named = tmp_path / "elsewhere.pdf"

    found = discover_pdfs([tmp_path / "docs", a, str(named)])

    assert found == [a, b, named]


def test_screening_reports_missing_huge_and_duplicate_files(tmp_path: Path) -> None:
    first = write(tmp_path / "first.pdf", PDF)
    copy = write(tmp_path / "copy.pdf", PDF)
    huge = write(tmp_path / "huge.pdf", b"x" * 2_000)
    known = write(tmp_path / "known.pdf", b"%PDF- already indexed")

    keep, summary = screen_files([first, copy, huge, tmp_path / "gone.pdf", known],
                                 {content_hash(known.read_bytes())}, max_bytes=1_500_000)
    small_keep, small = screen_files([huge], set(), max_bytes=1_000)

    assert keep == [first, huge]
    assert summary.duplicates == [str(copy), str(known)]
    assert summary.skipped == [{"uri": str(tmp_path / "gone.pdf"), "reason": "file not found"}]
    assert small_keep == []
    assert small.skipped[0]["uri"] == str(huge)


def test_a_run_indexes_the_good_files_and_says_why_it_skipped_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    write(folder / "acme.pdf", PDF)
    write(folder / "broken.pdf", corrupt_pdf())
    write(folder / "blank.pdf", blank_pdf())
    store, embedder = IndexStore(tmp_path / "index"), Embedder(HashingModel)

    first = ingest_files([folder], store, embedder)
    again = ingest_files([folder], store, embedder)

    assert (first.documents, first.pages) == (1, 3)
    assert first.chunks == len(store.load())
    assert {s["uri"].rsplit("/", 1)[1] for s in first.skipped} == {"broken.pdf", "blank.pdf"}
    assert first.version is not None
    assert again.documents == 0
    assert again.duplicates == [str(folder / "acme.pdf")]
    assert again.version == first.version  # nothing new: nothing published


def test_one_document_reports_whether_it_was_already_indexed(tmp_path: Path) -> None:
    store, embedder = IndexStore(tmp_path / "index"), Embedder(HashingModel)

    document, version, duplicate = ingest_document(PDF, "acme.pdf", store, embedder)
    _, _, again = ingest_document(PDF, "acme-copy.pdf", store, embedder)

    assert (duplicate, again) == (False, True)
    assert version is not None
    assert [d["document_id"] for d in store.documents()] == [document.document_id]
    with pytest.raises(BadDocument):
        ingest_document(blank_pdf(), "blank.pdf", store, embedder)


def test_summary_reports_pages_per_second() -> None:
    summary = IngestSummary(documents=1, pages=30, chunks=90, seconds=1.5)

    shown = summary.as_dict()

    assert shown["pages_per_s"] == 20.0
    assert IngestSummary().as_dict()["pages_per_s"] == 0.0
