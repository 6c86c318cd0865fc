"""Chat latency: time to first token and tokens/s at 1 and 8 concurrent users (CPU).

Direct mode (default) drives :class:`serve.models.GeneratorService` with the default
model (SmolLM2-135M-Instruct) on the assistant's real prompt (snapshot + passages).
``--http`` instead starts ``marketray serve`` (tests/integration/harness.py) and
measures through the chat WebSocket ``/chat``, from send to first token frame.
Prints one JSON object: figure = p50 TTFT at one user, baseline = the 1.5 s target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.assistant_fixtures import evidence_for, questions  # noqa: E402
from bench.common import emit  # noqa: E402

TARGET_TTFT_S = 1.5


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
    tokens = len(tokenizer(text).input_ids) if tokenizer is not None else len(text.split())
    ttft = first if first is not None else total
    return {"ttft_s": ttft, "total_s": total, "tokens": tokens,
            "tokens_per_s": (tokens - 1) / (total - ttft) if total > ttft and tokens > 1 else 0.0}


async def _one_ws(ws_url: str, token: str, item: dict[str, str]) -> dict[str, float]:
    import json

    import websockets

    async with websockets.connect(f"{ws_url}/chat?token={token}", max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"message": item["question"], "context": {}}))
        first = None
        frames = 0
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "token":
                frames += 1
                if first is None:
                    first = time.perf_counter() - started
            elif frame["type"] == "done":
                break
            else:
                raise RuntimeError(frame)
    total = time.perf_counter() - started
    ttft = first if first is not None else total
    return {"ttft_s": ttft, "total_s": total, "tokens": frames,
            "tokens_per_s": (frames - 1) / (total - ttft) if total > ttft and frames > 1 else 0.0}


def _summary(rows: list[dict[str, float]], wall_s: float) -> dict[str, float]:
    ttfts = sorted(r["ttft_s"] for r in rows)
    return {
        "requests": len(rows),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_max_s": round(ttfts[-1], 3),
        "tokens_per_s_per_user_p50": round(statistics.median(r["tokens_per_s"] for r in rows), 2),
        "aggregate_tokens_per_s": round(sum(r["tokens"] for r in rows) / wall_s, 2),
        "mean_tokens": round(statistics.mean(r["tokens"] for r in rows), 1),
    }


async def _run(call: Any, users: int, rounds: int) -> dict[str, float]:
    items = questions()
    rows: list[dict[str, float]] = []
    started = time.perf_counter()
    for round_index in range(rounds):
        batch = [items[(round_index * users + u) % len(items)] for u in range(users)]
        rows += await asyncio.gather(*(call(item) for item in batch))
    return _summary(rows, time.perf_counter() - started)


async def direct(args: argparse.Namespace) -> dict[str, Any]:
    from market.settings import Settings
    from serve.models import GeneratorService

    service = GeneratorService(Settings(data_dir=Path(args.data_dir)),
                               max_concurrent=args.max_concurrent)
    tokenizer = getattr(service.generator, "tokenizer", None)

    async def call(item: dict[str, str]) -> dict[str, float]:
        return await _one_direct(service, tokenizer, item, args.max_new_tokens)

    await call(questions()[0])  # warm-up
    one = await _run(call, 1, args.rounds)
    eight = await _run(call, 8, 1)
    return {"mode": "direct GeneratorService", "backend": service.status(),
            "users_1": one, "users_8": eight}


async def http(args: argparse.Namespace) -> dict[str, Any]:
    from tests.integration.harness import start_service

    serve_args = tuple(args.serve_args.split()) if args.serve_args else ()
    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT,NVDA"}, args=serve_args,
                       timeout_s=600) as svc:
        token = svc.token("analyst", "bench")

        async def call(item: dict[str, str]) -> dict[str, float]:
            return await _one_ws(svc.ws_url, token, item)

        await call(questions()[0])
        one = await _run(call, 1, args.rounds)
        eight = await _run(call, 8, 1)
    return {"mode": f"marketray serve {args.serve_args}, WebSocket /chat".replace("  ", " "),
            "users_1": one, "users_8": eight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", action="store_true", help="measure through marketray serve")
    parser.add_argument("--rounds", type=int, default=6, help="sequential requests at 1 user")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-concurrent", type=int, default=4)
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
