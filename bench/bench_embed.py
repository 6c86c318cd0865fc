"""Embedding throughput: the Serve Embedder deployment vs sentence-transformers in-process.

Same run, same texts: ``SentenceTransformer.encode`` (batch 64) in this process against a
local Ray Serve app with one ``serve.models.Embedder`` replica fed by concurrent handle
calls of ``--chunk`` texts each (``@serve.batch`` merges them), with Serve configured as
``marketray serve`` configures it. The two alternate, round by round, while Ray runs, so
both see the same background; the direct rate before Ray started is reported as well.
Prints one JSON object: figure = median deployment texts/s, baseline = median direct
texts/s, ratio = median of the per-round ratios (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
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


def direct_rate(model: Any, batch: list[str], threads: int) -> float:
    """Texts/s of one ``SentenceTransformer.encode`` over ``batch`` on ``threads`` cores."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model.encode(batch, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return len(batch) / (time.perf_counter() - started)


async def serve_rate(handle: Any, batch: list[str], chunk: int) -> float:
    """Texts/s of concurrent handle calls of ``chunk`` texts each over ``batch``."""
    started = time.perf_counter()
    parts = [batch[i:i + chunk] for i in range(0, len(batch), chunk)]
    results = await asyncio.gather(*(handle.embed.remote(p) for p in parts))
    assert sum(len(r) for r in results) == len(batch)
    return len(batch) / (time.perf_counter() - started)


async def interleaved(app: Any, model: Any, batch: list[str], chunk: int, rounds: int,
                      threads: int) -> tuple[list[float], list[float]]:
    """Deploy ``app``; alternate a direct encode and a deployment pass, ``rounds`` times.

    Alternating puts both under the same background (Ray's own processes, the host's
    other tenants) round by round. With ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` the handle's
    router lives on the caller's event loop, so the handle must not outlive it.
    """
    import torch
    from ray import serve

    handle = serve.run(app, name="bench_embed", route_prefix=None)
    try:
        await handle.embed.remote(batch[:chunk])
        direct, deployed = [], []
        for _ in range(rounds):
            direct.append(direct_rate(model, batch, threads))
            torch.set_num_threads(1)  # the driver only awaits now: the cores are the replica's
            deployed.append(await serve_rate(handle, batch, chunk))
        return direct, deployed
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

    from rag.embedder import load_minilm

    model = load_minilm("cpu")
    model.encode(batch[:64], batch_size=64)
    before_ray = max(direct_rate(model, batch, threads) for _ in range(2))

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Serve as `marketray serve` runs it (serve.cli sets this with its default ingress):
    # handles call replicas over gRPC and user code runs on the replica's own event loop;
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # and its local cluster's workers at normal priority, like the driver here (Ray's
    # default nice 15 lets every other process on the host preempt the replica).
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    from market.settings import Settings
    from serve.models import Embedder

    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        app = Embedder.bind(Settings().model_dump(mode="json"))
        direct, deployed = asyncio.run(
            interleaved(app, model, batch, args.chunk, args.rounds, threads))
    finally:
        ray.shutdown()
    ratios = [d / b for d, b in zip(deployed, direct, strict=True)]
    emit({"benchmark": "embedding throughput, all-MiniLM-L6-v2 (CPU)",
          "figure": round(statistics.median(deployed), 1),
          "unit": "texts/s via Serve Embedder deployment (median of rounds)",
          "baseline": round(statistics.median(direct), 1),
          "baseline_name": "SentenceTransformer.encode in this process, alternating with the "
                           "deployment round by round while Ray runs",
          "ratio": round(statistics.median(ratios), 3), "target_ratio": 0.9,
          "ratio_per_round": [round(r, 3) for r in ratios],
          "baseline_before_ray": round(before_ray, 1),
          "ratio_to_baseline_before_ray": round(statistics.median(deployed) / before_ray, 3),
          "texts": args.texts, "chunk_per_call": args.chunk, "cpus": threads})


if __name__ == "__main__":
    main()
