"""rag.index: versioned publish, incremental add/delete, exact vs HNSW, saved BM25 counts.

The store's lifecycle tests run on a plain path, a ``file://`` URI and pyarrow's in-memory
filesystem (an object store: versions are uploaded, then downloaded into a node's cache).
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from core.storage import Storage
from rag import lexical
from rag.index import IndexStore, build_faiss_index, table_with_vectors
from rag.lexical import BM25Index, TermCounts, tokenize
from rag.retrieval import HybridRetriever


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _doc(doc_id: str, n: int, rng: np.random.Generator) -> tuple[pa.Table, dict]:
    columns = {"chunk_id": [f"{doc_id}:{i}" for i in range(n)], "document_id": [doc_id] * n,
               "page": list(range(1, n + 1)), "text": [f"text {i}" for i in range(n)]}
    record = {"document_id": doc_id, "content_hash": doc_id * 4, "uri": f"{doc_id}.pdf"}
    return table_with_vectors(columns, _unit(rng, n)), record


@pytest.fixture(params=["path", "file_uri", "memory"])
def location(request, tmp_path):
    """Return an index location of each kind; the memory one is an object store."""
    if request.param == "path":
        return tmp_path / "index"
    if request.param == "file_uri":
        return f"file://{tmp_path}/index"
    return Storage("bucket/index", filesystem=pafs._MockFileSystem())


def _node(location, tmp_path, name="node"):
    """Return a store as one node sees it (its own download cache)."""
    return IndexStore(location, cache_dir=tmp_path / f"{name}-cache")


def test_publish_then_load_round_trips_chunks_and_vectors(location, tmp_path):
    rng = np.random.default_rng(1)
    store = _node(location, tmp_path)
    table, record = _doc("a", 5, rng)

    version, duplicates = store.add(table, [record])
    snapshot = store.load()

    assert version == "v000001" == snapshot.version
    assert duplicates == []
    assert len(snapshot) == 5
    assert snapshot.vectors.shape == (5, 16)
    assert snapshot.documents == [record]
    assert store.storage.read_text("CURRENT") == "v000001"


def test_same_content_hash_is_not_indexed_twice(location, tmp_path):
    rng = np.random.default_rng(2)
    store = _node(location, tmp_path)
    table, record = _doc("a", 3, rng)
    store.add(table, [record])

    version, duplicates = store.add(table, [record])

    assert version == "v000001"
    assert duplicates == ["a"]
    assert len(store.load()) == 3


def test_add_and_delete_publish_new_versions(location, tmp_path):
    rng = np.random.default_rng(3)
    store = _node(location, tmp_path)
    for name, n in (("a", 3), ("b", 4)):
        store.add(*_as_args(_doc(name, n, rng)))

    after_delete = store.delete("a")
    snapshot = store.load()

    assert after_delete == "v000003"
    assert set(snapshot.column("document_id")) == {"b"}
    assert [d["document_id"] for d in snapshot.documents] == ["b"]
    assert store.delete("missing") is None


def _as_args(pair):
    table, record = pair
    return table, [record]


def test_old_versions_are_pruned_but_current_kept(location, tmp_path):
    rng = np.random.default_rng(4)
    store = IndexStore(location, keep_versions=2, cache_dir=tmp_path / "cache")
    for name in "abcd":
        store.add(*_as_args(_doc(name, 2, rng)))
        store.load()

    kept = store.storage.listdir("versions")

    assert kept == ["v000003", "v000004"]
    assert store.current_version() == "v000004"
    assert not [n for n in store.storage.listdir() if n.startswith(".staging-")]
    if not store.storage.is_local:  # downloads of pruned versions go too
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["v000003",
                                                                          "v000004"]


def test_version_published_by_one_node_is_loaded_by_another(location, tmp_path):
    rng = np.random.default_rng(11)
    writer, reader = _node(location, tmp_path, "writer"), _node(location, tmp_path, "reader")
    writer.add(*_text_doc("a", 30, rng))
    first = reader.load()
    table, records = _text_doc("b", 20, rng)

    version, _ = writer.add(table, records)
    second = reader.load()

    assert (first.version, second.version, version) == ("v000001", "v000002", "v000002")
    np.testing.assert_array_equal(second.vectors[30:], table.column("vector").combine_chunks()
                                  .flatten().to_numpy().reshape(20, 16))
    assert second.faiss_index.ntotal == 50
    _assert_scores_like_texts(second)  # the appended term counts travelled with the version
    assert [d["document_id"] for d in reader.documents()] == ["a", "b"]


def test_empty_store_loads_as_empty_snapshot(location, tmp_path):
    snapshot = _node(location, tmp_path).load()

    assert snapshot.version is None
    assert len(snapshot) == 0


def test_large_collections_use_hnsw_with_high_recall():
    rng = np.random.default_rng(5)
    vectors = _unit(rng, 3_000, 32)
    queries = _unit(rng, 50, 32)

    approximate = build_faiss_index(vectors, hnsw_threshold=1_000)
    exact = build_faiss_index(vectors, hnsw_threshold=10_000)

    assert "HNSW" in type(approximate).__name__
    assert type(exact).__name__ == "IndexFlatIP"
    _, got = approximate.search(queries, 10)
    _, want = exact.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9


def test_dense_search_with_candidates_is_exact_over_the_subset(tmp_path):
    rng = np.random.default_rng(6)
    store = IndexStore(tmp_path)
    store.add(*_as_args(_doc("a", 20, rng)))
    snapshot = store.load()
    candidates = np.arange(5, 12)

    scores, rows = snapshot.dense_search(snapshot.vectors[7], 3, candidates)

    assert rows[0] == 7
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert set(rows.tolist()) <= set(candidates.tolist())


@pytest.mark.parametrize("pattern", ["runs", "scattered", "unsorted"])
def test_dense_search_over_row_runs_equals_brute_force(tmp_path, pattern):
    rng = np.random.default_rng(11)
    store = IndexStore(tmp_path)
    store.add(*_as_args(_doc("a", 400, rng)))
    snapshot = store.load()
    candidates = {
        "runs": np.concatenate([np.arange(10, 60), np.arange(61, 62), np.arange(200, 330)]),
        "scattered": np.arange(3, 400, 2),  # 199 runs of one row each
        "unsorted": rng.permutation(400)[:150],
    }[pattern].astype(np.int64)
    query = _unit(rng, 1)[0]

    scores, rows = snapshot.dense_search(query, 25, candidates)

    brute = snapshot.vectors[candidates] @ query
    order = np.argsort(-brute, kind="stable")[:25]
    assert rows.tolist() == candidates[order].tolist()
    np.testing.assert_allclose(scores, brute[order], rtol=1e-6)


WORDS = ["revenue", "gross", "margin", "FY2023", "10-K", "dividends", "lease", "debt",
         "covenant", "impairment", "goodwill", "pension", "hedging", "backlog"]
LEXICAL_QUERIES = ["gross margin FY2023", "debt covenant", "turbine backlog", "laser orders",
                   "10-K goodwill impairment", "nothing matches"]


def _text_doc(doc_id: str, n: int, rng: np.random.Generator,
              extra: tuple[str, ...] = ()) -> tuple[pa.Table, list[dict]]:
    words = WORDS + list(extra)
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(n)]
    columns = {"chunk_id": [f"{doc_id}:{i}" for i in range(n)], "document_id": [doc_id] * n,
               "page": list(range(1, n + 1)), "text": texts,
               "embed_text": [f"{doc_id} report\n{t}" for t in texts]}
    record = {"document_id": doc_id, "content_hash": doc_id * 4, "uri": f"{doc_id}.pdf"}
    return table_with_vectors(columns, _unit(rng, n)), [record]


def _assert_scores_like_texts(snapshot) -> None:
    assert snapshot.term_counts is not None
    loaded = BM25Index.from_counts(snapshot.term_counts)
    direct = BM25Index(snapshot.column("embed_text"))
    for query in LEXICAL_QUERIES:
        np.testing.assert_allclose(loaded.scores(query), direct.scores(query),
                                   rtol=1e-6, atol=1e-7)


def _counting_tokenizer(monkeypatch) -> list[str]:
    seen: list[str] = []

    def counting(text: str) -> list[str]:
        seen.append(text)
        return tokenize(text)

    monkeypatch.setattr(lexical, "tokenize", counting)
    return seen


def test_published_version_loads_counts_that_score_like_its_texts(tmp_path):
    rng = np.random.default_rng(21)
    store = IndexStore(tmp_path)
    table, records = _text_doc("a", 40, rng)

    store.publish(table, records)
    snapshot = store.load()

    assert (tmp_path / "versions" / "v000001" / "lexical" / "indptr.npy").exists()
    _assert_scores_like_texts(snapshot)


def test_add_appends_new_chunks_with_new_terms_and_scores_like_all_texts(tmp_path):
    rng = np.random.default_rng(22)
    store = IndexStore(tmp_path)
    store.add(*_text_doc("a", 30, rng))

    store.add(*_text_doc("b", 20, rng, extra=("turbine", "laser", "orders")))
    snapshot = store.load()

    assert len(snapshot) == 50
    assert {"turbine", "laser", "order"} <= set(snapshot.term_counts.vocabulary)
    _assert_scores_like_texts(snapshot)


def test_add_tokenises_only_the_new_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(23)
    store = IndexStore(tmp_path)
    store.add(*_text_doc("a", 30, rng))
    new_table, records = _text_doc("b", 7, rng, extra=("turbine",))
    tokenised = _counting_tokenizer(monkeypatch)

    store.add(new_table, records)

    assert sorted(tokenised) == sorted(new_table.column("embed_text").to_pylist())


def test_delete_drops_rows_without_tokenising_and_scores_like_remaining_texts(
    tmp_path, monkeypatch
):
    rng = np.random.default_rng(24)
    store = IndexStore(tmp_path)
    store.add(*_text_doc("a", 25, rng))
    store.add(*_text_doc("b", 15, rng, extra=("laser",)))
    store.add(*_text_doc("c", 10, rng))
    tokenised = _counting_tokenizer(monkeypatch)

    store.delete("b")

    assert tokenised == []
    monkeypatch.undo()
    snapshot = store.load()
    assert set(snapshot.column("document_id")) == {"a", "c"}
    assert "laser" not in snapshot.term_counts.vocabulary
    _assert_scores_like_texts(snapshot)


def test_retriever_over_a_loaded_version_does_not_tokenise_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(25)
    store = IndexStore(tmp_path)
    store.add(*_text_doc("a", 30, rng))
    snapshot = store.load()
    tokenised = _counting_tokenizer(monkeypatch)

    HybridRetriever(snapshot)

    assert tokenised == []


def test_version_without_saved_counts_loads_and_tokenises_instead(tmp_path, caplog):
    rng = np.random.default_rng(26)
    store = IndexStore(tmp_path)
    version = store.publish(*_text_doc("a", 30, rng))
    shutil.rmtree(tmp_path / "versions" / version / "lexical")  # as written before the counts

    with caplog.at_level(logging.INFO, logger="rag.index"):
        snapshot = store.load()
    retriever = HybridRetriever(snapshot)

    assert snapshot.term_counts is None
    assert "no saved term counts" in caplog.text
    want = BM25Index(snapshot.column("embed_text"))
    for query in LEXICAL_QUERIES:
        np.testing.assert_allclose(retriever.bm25.scores(query), want.scores(query))


def test_saved_counts_of_another_row_count_are_ignored_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(27)
    store = IndexStore(tmp_path)
    version = store.publish(*_text_doc("a", 30, rng))
    folder = tmp_path / "versions" / version / "lexical"
    shutil.rmtree(folder)
    TermCounts.from_texts(["only one chunk"]).save(folder)

    with caplog.at_level(logging.WARNING, logger="rag.index"):
        snapshot = store.load()

    assert snapshot.term_counts is None
    assert "1 rows for 30 chunks" in caplog.text


def test_add_onto_a_version_without_counts_saves_counts_of_all_chunks(tmp_path):
    rng = np.random.default_rng(28)
    store = IndexStore(tmp_path)
    version = store.publish(*_text_doc("a", 20, rng))
    shutil.rmtree(tmp_path / "versions" / version / "lexical")

    store.add(*_text_doc("b", 10, rng, extra=("turbine",)))
    snapshot = store.load()

    assert len(snapshot) == 30
    _assert_scores_like_texts(snapshot)
