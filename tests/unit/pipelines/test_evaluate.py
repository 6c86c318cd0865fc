"""Retrieval scoring: hit@k on evidence pages and documents, from ranked results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.evaluate import load_questions, score


@dataclass
class Hit:
    document_id: str
    page: int  # 1-based, as the retriever returns it


class RankedRetriever:
    """Return fixed results per question (the vector is ignored)."""

    def __init__(self, results: dict[str, list[Hit]]) -> None:
        self.results = results

    def search(self, question: str, k: int, *, mode: str, query_vector: object) -> list[Hit]:
        return self.results[question][:k]


def test_questions_keep_their_fields_and_evidence_pages_as_a_set(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "a?", "doc_name": "X", "evidence": [
        {"evidence_page_num": 3}, {"evidence_page_num": "3"}, {"evidence_page_num": 7}]})
        + "\n\n" + json.dumps({"question": "b?", "doc_name": "Y"}) + "\n")

    questions = load_questions(path)

    assert [q["question"] for q in questions] == ["a?", "b?"]
    assert questions[0]["pages"] == {3, 7}
    assert questions[1]["pages"] == set()


def test_hits_count_the_first_rank_of_the_right_page_of_the_right_document() -> None:
    questions = [
        {"question": "first", "doc_name": "A", "pages": {0}},  # hit at rank 0
        {"question": "third", "doc_name": "A", "pages": {4}},  # hit at rank 2
        {"question": "late", "doc_name": "B", "pages": {1}},  # hit at rank 6, B not in top 5
        {"question": "wrong doc", "doc_name": "B", "pages": {0}},  # page 1 but of A
        {"question": "unknown", "doc_name": "C", "pages": {0}},  # not in the index
    ]
    filler = [Hit("A", 9)] * 6
    retriever = RankedRetriever({
        "first": [Hit("A", 1), *filler],
        "third": [Hit("B", 5), Hit("A", 1), Hit("A", 5)],
        "late": [*filler, Hit("B", 2)],
        "wrong doc": [Hit("A", 1), Hit("B", 3)],
        "unknown": [Hit("A", 1)],
    })

    got = score(retriever, questions, [None] * 5, {"A": "A", "B": "B"}, "hybrid")

    assert got == {"page_hit@1": pytest.approx(1 / 5), "page_hit@5": pytest.approx(2 / 5),
                   "page_hit@10": pytest.approx(3 / 5), "doc_hit@5": pytest.approx(3 / 5)}


def test_no_questions_score_zero_not_a_division_error() -> None:
    got = score(RankedRetriever({}), [], [], {}, "dense")
    assert set(got.values()) == {0.0}
