"""The embedder around an injected model: batch size, empty input, token counts, dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.chunking import approximate_token_count
from rag.embedder import Embedder
from tests.unit.rag.kb_pdfs import HashingModel


class RecordingModel(HashingModel):
    """The hashing stand-in that keeps the batch size of each encode."""

    def __init__(self) -> None:
        super().__init__(dimension=16)
        self.batch_sizes: list[int] = []
        self.dtype = "torch.bfloat16"

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        self.batch_sizes.append(options["batch_size"])
        return super().encode(texts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text) for text in texts]


def test_vectors_have_the_model_dimension_and_unit_length() -> None:
    embedder = Embedder(HashingModel)

    vectors = embedder.encode(["net sales rose", "gross margin was stable"])

    assert vectors.shape == (2, embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_a_query_vector_is_the_first_row_of_its_batch() -> None:
    embedder = Embedder(HashingModel)

    np.testing.assert_array_equal(embedder.encode_query("capex"), embedder.encode(["capex"])[0])


def test_no_texts_give_an_empty_matrix_without_calling_the_model() -> None:
    model = RecordingModel()
    embedder = Embedder(lambda: model)

    empty = embedder.encode([])

    assert empty.shape == (0, 16)
    assert empty.dtype == np.float32
    assert model.batch_sizes == []


def test_the_batch_size_reaches_the_model_and_its_dtype_and_counter_are_used() -> None:
    model = RecordingModel()
    embedder = Embedder(lambda: model, batch_size=7)

    embedder.encode(["a", "b"])

    assert model.batch_sizes == [7]
    assert embedder.dtype == "bfloat16"
    assert embedder.count_tokens(["abc", "de"]) == [3, 2]


def test_a_model_without_a_counter_gets_the_approximation() -> None:
    texts = ["three little words", "one"]

    assert Embedder(HashingModel).count_tokens(texts) == approximate_token_count(texts)
    assert Embedder(HashingModel).dtype == "float32"
