"""rag.lexical: finance-aware tokens, BM25 scores against a direct formula, saved counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rag.lexical import K1, B, BM25Index, InvalidTermCounts, TermCounts, tokenize


def test_fiscal_year_is_split_and_kept_whole():
    assert {"fy2018", "fy", "2018"} <= set(tokenize("FY2018"))


def test_numbers_lose_thousands_separators_and_keep_decimals():
    assert {"3226.8", "15.6"} <= set(tokenize("$3,226.8 million, up 15.6%"))


def test_form_names_and_plurals_are_normalised():
    tokens = tokenize("Form 10-K margins")

    assert {"10k", "margin"} <= set(tokens)
    assert "margins" not in tokens


def _reference_bm25(docs: list[list[str]], query: list[str]) -> list[float]:
    n = len(docs)
    average = sum(len(d) for d in docs) / n
    scores = []
    for doc in docs:
        score = 0.0
        for term in query:
            df = sum(term in d for d in docs)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(doc) / average))
        scores.append(score)
    return scores


def test_scores_match_the_okapi_formula():
    texts = ["gross margin improved", "gross profit and gross margin fell sharply",
             "legal proceedings", "margin"]
    index = BM25Index(texts)

    got = index.scores("gross margin")

    want = _reference_bm25([tokenize(t) for t in texts], tokenize("gross margin"))
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_search_ranks_and_restricts_to_candidates():
    index = BM25Index(["quick ratio FY2023", "quick", "unrelated words"])

    scores, rows = index.search("quick ratio", 5)
    _, only = index.search("quick ratio", 5, candidates=[1, 2])

    assert rows.tolist() == [0, 1]
    assert scores[0] > scores[1]
    assert only.tolist() == [1]


TEXTS = ["Gross margin improved in FY2023", "Revenue and gross profit fell", "Form 10-K filed",
         "Dividends and share repurchases", "", "margin margin margin pressure"]
QUERIES = ["gross margin", "10-K dividends", "FY2023 revenue", "turbine orders", "nothing"]


def _assert_same_scores(index: BM25Index, want: BM25Index) -> None:
    for query in QUERIES:
        np.testing.assert_allclose(index.scores(query), want.scores(query), rtol=1e-6, atol=1e-7)


def test_counts_appended_with_new_terms_score_like_an_index_of_all_texts():
    extra = ["Turbine orders doubled", "gross margin on turbine service"]
    counts = TermCounts.from_texts(TEXTS)

    appended = counts.append(extra)

    assert appended.rows == len(TEXTS) + len(extra)
    assert list(appended.vocabulary)[: len(counts.vocabulary)] == list(counts.vocabulary)
    _assert_same_scores(BM25Index.from_counts(appended), BM25Index(TEXTS + extra))


def test_counts_of_kept_rows_score_like_an_index_of_those_texts_and_drop_unused_terms():
    keep = np.array([0, 2, 5])
    counts = TermCounts.from_texts(TEXTS)

    kept = counts.take(keep)

    assert kept.rows == 3
    assert "dividend" not in kept.vocabulary
    assert sorted(kept.vocabulary.values()) == list(range(len(kept.vocabulary)))
    _assert_same_scores(BM25Index.from_counts(kept), BM25Index([TEXTS[i] for i in keep]))


def test_saved_counts_load_and_score_like_the_texts(tmp_path):
    TermCounts.from_texts(TEXTS).save(tmp_path / "lexical")

    loaded = TermCounts.load(tmp_path / "lexical", rows=len(TEXTS))

    _assert_same_scores(BM25Index.from_counts(loaded), BM25Index(TEXTS))


@pytest.mark.parametrize("damage", ["rows", "tokenizer", "missing"])
def test_saved_counts_that_do_not_fit_are_rejected_with_a_reason(tmp_path, damage):
    folder = tmp_path / "lexical"
    TermCounts.from_texts(TEXTS).save(folder)
    rows = len(TEXTS) + 1 if damage == "rows" else len(TEXTS)
    if damage == "tokenizer":
        meta = json.loads((folder / "terms.json").read_text())
        (folder / "terms.json").write_text(json.dumps({**meta, "tokenizer": -1}))
    if damage == "missing":
        (folder / "counts.npy").unlink()

    with pytest.raises(InvalidTermCounts) as error:
        TermCounts.load(folder, rows=rows)

    assert str(error.value)


def test_empty_counts_give_an_empty_index():
    index = BM25Index.from_counts(TermCounts.empty())

    assert index.size == 0
    assert index.scores("gross margin").shape == (0,)
