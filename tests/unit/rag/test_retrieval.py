"""rag.retrieval over a small index built from generated filings (hashing embedder)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from rag.documents import process_document
from rag.embedder import Embedder
from rag.index import IndexStore
from rag.ingestion import embed_documents
from rag.retrieval import HybridRetriever
from tests.unit.rag.kb_pdfs import HashingModel, report_pdf


def _filing(company: str, year: int, topic: str) -> bytes:
    return report_pdf([
        ["FORM 10-K", f"{company} Inc.", "(Exact name of registrant as specified in its charter)",
         f"For the fiscal year ended December 31, {year}"],
        [f"{company} revenue from {topic} grew in fiscal {year}.",
         f"Gross margin for {company} was stable."],
    ], table=False)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    store = IndexStore(tmp_path_factory.mktemp("index"))
    embedder = Embedder(HashingModel)
    filings = (("Zephyr", 2022, "turbines"), ("Zephyr", 2023, "turbines"),
               ("Quasar", 2023, "lasers"))
    docs = [process_document(_filing(c, y, t), f"{c}_{y}_10K.pdf") for c, y, t in filings]
    for doc in docs:
        store.add(embed_documents([doc], embedder), [doc.record()])
    return HybridRetriever(store.load(), embedder.encode_query)


def test_company_named_in_query_restricts_results(retriever):
    results = retriever.search("How did Quasar revenue grow?", 5)

    assert results
    assert {r.uri for r in results} == {"Quasar_2023_10K.pdf"}


def test_year_named_in_query_prefers_that_filing(retriever):
    results = retriever.search("Zephyr revenue from turbines in FY2022", 3)

    assert results[0].uri == "Zephyr_2022_10K.pdf"
    assert results[0].page == 2


def test_explicit_filters_narrow_results(retriever):
    results = retriever.search("revenue grew", 10, {"period": "FY2023", "company": "zephyr"})

    assert {r.uri for r in results} == {"Zephyr_2023_10K.pdf"}


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_every_mode_returns_sources_with_one_based_pages(retriever, mode):
    results = retriever.search("lasers revenue", 4, mode=mode)

    assert results
    assert all(r.page >= 1 for r in results)
    assert len({(r.document_id, r.page) for r in results}) == len(results)


def test_unknown_filter_is_rejected(retriever):
    with pytest.raises(InvalidInput):
        retriever.search("revenue", 3, {"colour": "red"})
