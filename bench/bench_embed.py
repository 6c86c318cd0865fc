"""Embedding throughput: the Serve Embedder deployment vs sentence-transformers in-process.

Same run, same texts: first ``SentenceTransformer.encode`` (batch 64) in this process,
then a local Ray Serve app with one ``serve.models.Embedder`` replica fed by concurrent
handle calls of ``--chunk`` texts each (``@serve.batch`` merges them), with Serve
configured as ``marketray serve`` configures it (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``).
Prints one JSON object: figure = deployment texts/s, baseline = direct texts/s, ratio
(target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
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


def direct(batch: list[str], repeats: int) -> float:
    from rag.embedder import load_minilm

    model = load_minilm("cpu")
    model.encode(batch[:64], batch_size=64)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        model.encode(batch, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        best = max(best, len(batch) / (time.perf_counter() - started))
    return best


async def through_serve(app: Any, batch: list[str], chunk: int, repeats: int) -> float:
    """Deploy ``app``, time concurrent handle calls, shut Serve down, all on one loop.

    With ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` the handle's router lives on the caller's
    event loop, so the handle must not outlive it.
    """
    from ray import serve

    handle = serve.run(app, name="bench_embed", route_prefix=None)
    try:
        await handle.embed.remote(batch[:chunk])
        best = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            parts = [batch[i:i + chunk] for i in range(0, len(batch), chunk)]
            results = await asyncio.gather(*(handle.embed.remote(p) for p in parts))
            assert sum(len(r) for r in results) == len(batch)
            best = max(best, len(batch) / (time.perf_counter() - started))
        return best
    finally:
        await serve.shutdown_async()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=16, help="texts per handle call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batch = texts(args.texts)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    baseline = direct(batch, args.repeats)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Serve as `marketray serve` runs it (serve.cli sets this with its default ingress):
    # handles call replicas over gRPC and user code runs on the replica's own event loop.
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    import ray

    from market.settings import Settings
    from serve.models import Embedder

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    torch.set_num_threads(1)  # the driver only awaits; leave the cores to the replica
    try:
        app = Embedder.bind(Settings().model_dump(mode="json"))
        figure = asyncio.run(through_serve(app, batch, args.chunk, args.repeats))
    finally:
        ray.shutdown()
    emit({"benchmark": "embedding throughput, all-MiniLM-L6-v2 (CPU)",
          "figure": round(figure, 1), "unit": "texts/s via Serve Embedder deployment",
          "baseline": round(baseline, 1),
          "baseline_name": "SentenceTransformer.encode in one process",
          "ratio": round(figure / baseline, 3), "target_ratio": 0.9,
          "texts": args.texts, "chunk_per_call": args.chunk, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
