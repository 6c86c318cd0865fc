"""Chat latency: time to first token and tokens/s at 1 and 8 concurrent users (CPU).

Direct mode (default) drives :class:`serve.models.GeneratorService` with the default
model (SmolLM2-135M-Instruct) on the assistant's real prompt (snapshot + passages), twice
on the same loaded model: ``unbatched`` (one ``model.generate`` per request, at most 4 at
once: the deployment before step-level batching) and ``batched`` (``rag.batching``).
``--http`` instead starts ``marketray serve`` (tests/integration/harness.py) and
measures through the chat WebSocket ``/chat``, from send to first token frame; it also
reports the server's own split of each answer (``context.timings``) and the Generator's
scheduler counters from ``/health``. Tokens are counted with the model's tokenizer.
Prints one JSON object: figure = p50 TTFT at one user (batched / served), baseline = the
1.5 s target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.assistant_fixtures import evidence_for, questions  # noqa: E402
from bench.common import emit  # noqa: E402

TARGET_TTFT_S = 1.5


def _tokenizer(data_dir: str) -> Any:
    """The default model's tokenizer (from its converted copy), to count tokens."""
    from transformers import AutoTokenizer

    from rag.generation import convert_gguf, default_model_path

    model = default_model_path()
    if model is None:
        return None
    return AutoTokenizer.from_pretrained(str(convert_gguf(model, Path(data_dir))))


def _count(tokenizer: Any, text: str, frames: int) -> int:
    return len(tokenizer(text).input_ids) if tokenizer is not None else frames


class Unbatched:
    """The local model with one ``model.generate`` per request (the pre-batching path)."""

    name = "local"

    def __init__(self, hf: Any) -> None:
        self.hf = hf

    def describe(self) -> dict[str, Any]:
        return {**self.hf.describe(), "batching": "off"}

    def stream(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 256, *,
               evidence: Mapping[str, Any] | None = None,
               stop: threading.Event | None = None) -> Iterator[str]:
        return self.hf._generate(messages, max_new_tokens, stop or threading.Event())


async def _one_direct(service: Any, tokenizer: Any, item: dict[str, str], max_new: int
                      ) -> dict[str, float]:
    from rag.prompt import build_messages

    evidence = evidence_for(item["question"], item["symbol"], item["intent"])
    started = time.perf_counter()
    first = None
    text = ""
    async for piece in service.stream(build_messages(evidence), max_new, evidence.to_dict()):
        if first is None:
            first = time.perf_counter() - started
        text += piece
    total = time.perf_counter() - started
    tokens = _count(tokenizer, text, len(text.split()))
    ttft = first if first is not None else total
    return {"ttft_s": ttft, "total_s": total, "tokens": tokens,
            "tokens_per_s": (tokens - 1) / (total - ttft) if total > ttft and tokens > 1 else 0.0}


async def _one_ws(ws_url: str, token: str, tokenizer: Any, item: dict[str, str]
                 ) -> dict[str, Any]:
    import json

    import websockets

    async with websockets.connect(f"{ws_url}/chat?token={token}", max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"message": item["question"], "context": {}}))
        first = None
        frames = 0
        text = ""
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "token":
                frames += 1
                text += frame["content"]
                if first is None:
                    first = time.perf_counter() - started
            elif frame["type"] == "done":
                break
            else:
                raise RuntimeError(frame)
    total = time.perf_counter() - started
    ttft = first if first is not None else total
    tokens = _count(tokenizer, text, frames)
    return {"ttft_s": ttft, "total_s": total, "tokens": tokens,
            "tokens_per_s": (tokens - 1) / (total - ttft) if total > ttft and tokens > 1 else 0.0,
            "timings": frame["message"]["context"].get("timings", {})}


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the slowest request)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _summary(rows: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    ttfts = [r["ttft_s"] for r in rows]
    summary: dict[str, Any] = {
        "requests": len(rows),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_p99_s": round(_percentile(ttfts, 0.99), 3),
        "tokens_per_s_per_user_p50": round(statistics.median(r["tokens_per_s"] for r in rows), 2),
        "aggregate_tokens_per_s": round(sum(r["tokens"] for r in rows) / wall_s, 2),
        "mean_tokens": round(statistics.mean(r["tokens"] for r in rows), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    timings = [r["timings"] for r in rows if r.get("timings")]
    if timings:
        summary["server_timings_p50_s"] = {
            key: round(statistics.median(t[key] for t in timings), 3)
            for key in ("session_s", "gather_s", "first_token_s", "generate_s")
            if all(key in t for t in timings)}
    return summary


async def _run(call: Any, users: int, rounds: int) -> dict[str, Any]:
    items = questions()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for round_index in range(rounds):
        batch = [items[(round_index * users + u) % len(items)] for u in range(users)]
        rows += await asyncio.gather(*(call(item) for item in batch))
    return _summary(rows, time.perf_counter() - started)


async def _users(call: Any, args: argparse.Namespace) -> dict[str, Any]:
    await call(questions()[0])  # warm-up
    result = {"users_1": await _run(call, 1, args.rounds)}
    if args.rounds_8:
        result["users_8"] = await _run(call, 8, args.rounds_8)
    return result


async def direct(args: argparse.Namespace) -> dict[str, Any]:
    from core.settings import Settings
    from serve.models import GeneratorService

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    batched = GeneratorService(Settings(data_dir=Path(args.data_dir)),
                               max_concurrent=32, max_batch=args.max_batch)
    hf = batched.generator
    tokenizer = getattr(hf, "tokenizer", None)
    result: dict[str, Any] = {"mode": "direct GeneratorService", "backend": batched.status()}
    variants = [("batched", batched)]
    if args.compare and getattr(hf, "scheduler", None) is not None:
        variants.insert(0, ("unbatched", GeneratorService(
            Settings(data_dir=Path(args.data_dir)), generator=Unbatched(hf),
            max_concurrent=args.max_concurrent)))
    for name, service in variants:
        async def call(item: dict[str, str], service: Any = service) -> dict[str, Any]:
            return await _one_direct(service, tokenizer, item, args.max_new_tokens)

        result[name] = await _users(call, args)
    result["users_1"] = result["batched"]["users_1"]
    result["scheduler"] = batched.status().get("scheduler")
    return result


async def http(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from serve.local_service import start_service

    tokenizer = _tokenizer(args.data_dir)
    serve_args = tuple(args.serve_args.split()) if args.serve_args else ()
    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT,NVDA"}, args=serve_args,
                       timeout_s=600) as svc:
        token = svc.token("analyst", "bench")

        async def call(item: dict[str, str]) -> dict[str, Any]:
            return await _one_ws(svc.ws_url, token, tokenizer, item)

        result = await _users(call, args)
        async with httpx.AsyncClient(timeout=30) as client:
            health = (await client.get(f"{svc.base_url}/health")).json()
    generator = health.get("checks", {}).get("generator", {})
    return {"mode": f"marketray serve {args.serve_args}, WebSocket /chat".replace("  ", " "),
            **result, "generator": {key: generator.get(key) for key in (
                "backend", "batching", "torch_threads", "figure_guard", "scheduler")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", action="store_true", help="measure through marketray serve")
    parser.add_argument("--rounds", type=int, default=6, help="sequential requests at 1 user")
    parser.add_argument("--rounds-8", type=int, default=2,
                        help="rounds of 8 concurrent users (0: skip)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-concurrent", type=int, default=4,
                        help="concurrent generate() calls of the unbatched variant")
    parser.add_argument("--max-batch", type=int, default=8, help="rows of the batched variant")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="direct mode: skip the unbatched variant")
    parser.add_argument("--threads", type=int, default=0, help="direct mode: torch threads")
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--serve-args", default="",
                        help='extra `marketray serve` flags with --http, e.g. "--no-knowledge"')
    args = parser.parse_args()
    result = asyncio.run(http(args) if args.http else direct(args))
    figure = result["users_1"]["ttft_p50_s"]
    emit({"benchmark": "chat time to first token (CPU, default model)",
          "figure": figure, "unit": "s, p50 TTFT at 1 user",
          "baseline": TARGET_TTFT_S, "baseline_name": "target p50 TTFT",
          "ratio": round(figure / TARGET_TTFT_S, 3), **result})


if __name__ == "__main__":
    main()
