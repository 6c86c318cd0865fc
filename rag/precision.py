"""Which numeric precision a model runs in: float16 on GPUs, bfloat16 where a CPU has it.

Both local models (the generator in :mod:`rag.generation`, the embedder in
:mod:`rag.embedder`) take a dtype name from :data:`DTYPES`; ``auto`` is resolved here.
"""

from __future__ import annotations

from typing import Any, get_args

from core.settings import Precision

DTYPES: tuple[str, ...] = get_args(Precision)


def resolve_dtype(requested: str, device: str) -> str:
    """Return the torch dtype name a local model runs in on ``device``.

    ``auto``: float16 on a GPU; on a CPU, bfloat16 where the cores do bfloat16 dot
    products natively (AVX512-BF16 or AMX), float32 elsewhere: AVX2 only emulates
    bfloat16, which is slower than float32 there, while native bfloat16 prefills and
    embeds several times faster with vectors within cosine 0.9999 of float32's
    (``bench/bench_chat.py``, ``bench/bench_embed.py``; docs/performance.md).
    """
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {requested!r}")
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "float16"
    return "bfloat16" if native_cpu_bfloat16() else "float32"


def native_cpu_bfloat16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    import torch

    mkldnn: Any = torch.backends.mkldnn  # oneDNN runs the bfloat16 matrix products
    # torch's own CPU checks are private: a torch without them means "no", not a failure
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return bool(mkldnn.is_available()) and any(bool(check()) for check in checks if check)
