"""The Ray Data ingestion pipeline end to end: real PDFs in, a searchable index out.

The shared run publishes into a ``file://`` data dir (the object-store code path of
core.storage); the split-document test into a plain path.
"""

from __future__ import annotations

import os
import shutil

import pytest
import ray

from core.settings import Settings
from pipelines.ingest import ingest
from rag.embedder import Embedder
from rag.index import IndexStore
from rag.ingestion import ingest_files
from rag.retrieval import HybridRetriever
from tests.unit.rag.kb_pdfs import blank_pdf, corrupt_pdf, encrypted_pdf, report_pdf, write

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_local():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def ingested(ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pdfs")
    data_dir = tmp_path_factory.mktemp("data")
    write(folder / "acme.pdf", report_pdf())
    write(folder / "globex.pdf", report_pdf([
        ["Globex quarterly note", "Globex hedges its copper exposure with futures."],
        ["Globex opened twelve new plants in Ohio."],
    ]))
    shutil.copy(folder / "acme.pdf", folder / "acme-copy.pdf")
    write(folder / "corrupt.pdf", corrupt_pdf())
    write(folder / "locked.pdf", encrypted_pdf())
    write(folder / "scan.pdf", blank_pdf())
    write(folder / "huge.pdf", report_pdf([["page"]] * 5, table=False))
    write(folder / "notes.pdf", b"just some text, not a PDF")
    settings = Settings(data_dir=f"file://{data_dir}")
    summary = ingest([folder], settings, max_pages=4, embed_actors=1)
    return folder, settings, summary


def test_good_documents_are_indexed_with_counts(ingested):
    _, settings, summary = ingested

    assert summary["documents"] == 2
    assert summary["pages"] == 3 + 2
    assert summary["chunks"] >= 5
    assert summary["version"] == "v000001"
    assert summary["seconds"] > 0


def test_bad_documents_are_skipped_with_reasons(ingested):
    _, _, summary = ingested

    reasons = {item["uri"].split("/")[-1]: item["reason"] for item in summary["skipped"]}
    assert set(reasons) == {"corrupt.pdf", "locked.pdf", "scan.pdf", "huge.pdf", "notes.pdf"}
    assert reasons["corrupt.pdf"].startswith("corrupt")
    assert reasons["locked.pdf"].startswith("encrypted")
    assert reasons["scan.pdf"].startswith("no extractable text")
    assert reasons["huge.pdf"].startswith("too large")
    assert reasons["notes.pdf"].startswith("not a PDF")


def test_same_content_under_another_name_is_indexed_once(ingested):
    _, _, summary = ingested

    assert len(summary["duplicates"]) == 1
    assert summary["duplicates"][0].split("/")[-1] in {"acme.pdf", "acme-copy.pdf"}


def test_index_is_valid_and_searchable_at_the_right_page(ingested):
    _, settings, summary = ingested
    snapshot = IndexStore(settings.storage("index")).load()
    embedder = Embedder()
    retriever = HybridRetriever(snapshot, embedder.encode_query)

    results = retriever.search("Which patent lawsuit is Acme a defendant in?", 3)

    assert settings.storage("index").location.startswith("file://")
    assert len(snapshot) == summary["chunks"] == snapshot.faiss_index.ntotal
    assert results[0].page == 3
    assert "patent lawsuit" in results[0].text
    assert results[0].uri in {"acme.pdf", "acme-copy.pdf"}


def test_second_run_over_the_same_files_adds_nothing(ingested):
    folder, settings, _ = ingested

    again = ingest([folder], settings, max_pages=4)

    assert again["documents"] == 0
    assert len(again["duplicates"]) == 3
    assert again["version"] == "v000001"


def test_large_document_split_across_workers_matches_the_sequential_loop(ray_local, tmp_path):
    # 60 pages: with 2 CPUs the parse actor reads pages 1-30 and a task reads 31-60.
    words = ["copper", "widgets", "freight", "pensions", "leases", "hedging", "tariffs",
             "royalties", "warranty", "backlog", "impairment", "dividends", "inventory"]
    # Lines that differ in words, not only digits (else they read as running heads).
    pages = [[f"{words[n % 13].title()} and {words[(n * 5) % 13]} drove region {n} results.",
              f"Customers of {words[(n * 7) % 13]} renewed {n * 3} {words[(n + 3) % 13]} deals."]
             for n in range(1, 61)]
    write(tmp_path / "long.pdf", report_pdf(pages, table=False))
    write(tmp_path / "short.pdf", report_pdf())
    embedder = Embedder()

    summary = ingest([tmp_path / "short.pdf", tmp_path / "long.pdf"],
                     Settings(data_dir=tmp_path / "ray"))
    ingest_files([tmp_path / "short.pdf", tmp_path / "long.pdf"],
                 IndexStore(tmp_path / "seq" / "index"), embedder)
    pipeline = IndexStore(tmp_path / "ray" / "index").load()
    sequential = IndexStore(tmp_path / "seq" / "index").load()

    assert summary["pages"] == 63
    assert summary["skipped"] == []
    for column in ("uri", "page", "ordinal", "text", "embed_text"):
        assert list(pipeline.column(column)) == list(sequential.column(column)), column
    assert "region 45 results" in " ".join(pipeline.column("text")[pipeline.column("page") == 45])
    assert (pipeline.vectors * sequential.vectors).sum(axis=1).min() > 0.999
