"""Model precision: which dtype ``auto`` picks, and bfloat16 embeddings against float32."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import rag.precision as precision
from rag.embedder import Embedder, load_minilm
from rag.precision import resolve_dtype


def test_auto_is_float16_on_gpu_and_bfloat16_only_where_the_cpu_has_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("auto", "cuda:0") == "float16"
    monkeypatch.setattr(precision, "native_cpu_bfloat16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(precision, "native_cpu_bfloat16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"  # asked for: given, even emulated
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("int4", "cpu")


@pytest.mark.slow
def test_bfloat16_embeddings_are_unit_float32_vectors_close_to_float32s() -> None:
    texts = ["Revenue grew 12% to $4.5 billion in fiscal 2023.",
             "A put/call ratio above 1 means more puts than calls traded.",
             "Net cash from operating activities was $1,234.5 million. " * 20]
    half = Embedder(partial(load_minilm, "cpu", "bfloat16"))
    full = Embedder(partial(load_minilm, "cpu", "float32"))

    low, high = half.encode(texts), full.encode(texts)

    assert (half.dtype, full.dtype) == ("bfloat16", "float32")
    assert low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    cosines = (low * high).sum(axis=1)
    assert cosines.min() > 0.999, cosines
    # the nearest neighbour of each text is the same text in the other precision
    assert list((low @ high.T).argmax(axis=1)) == [0, 1, 2]
