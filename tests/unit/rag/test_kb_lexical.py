"""rag.lexical: finance-aware tokens and BM25 scores against a direct formula."""

from __future__ import annotations

import math

import pytest

from rag.lexical import K1, B, BM25Index, tokenize


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
