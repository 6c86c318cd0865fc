"""The OpenAI-compatible backend's streaming client: hand-written SSE parsing vs ``openai``.

Both read the same server-sent events from an in-process transport (``httpx``'s
``MockTransport``), so the figures are the client's own cost, not the network's or a
model's: ``tokens_per_second`` of content deltas parsed, and the time to the first delta
of a stream. The hand-written reader is the loop ``rag.generation.OpenAIGenerator`` had
(``iter_lines``, ``data:`` lines, ``json.loads``); the maintained one is the ``openai``
client's ``chat.completions.create(stream=True)``. Also reported:

* ``import_s``: importing ``openai`` in a fresh interpreter (paid once per replica);
* ``edge_cases``: what each yields for SSE the spec allows or servers send and the
  simple loop mishandles — an ``error`` object mid-stream (vLLM and others send one
  when generation fails), a ``data`` field split over two lines, comments and blank
  keep-alives.

Prints one JSON object. figure = openai tokens/s; baseline = hand-written tokens/s.

    python bench/bench_llm_client.py [--tokens 2000] [--streams 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai

MODEL = "bench-model"


def sse_body(tokens: int) -> list[bytes]:
    """One write per event, as a server streaming tokens sends them."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    events = [dict(chunk, choices=[{"index": 0, "delta": {"content": f" t{i}"},
                                    "finish_reason": None}]) for i in range(tokens)]
    events.append(dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def transport(body: list[bytes]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]})
        return httpx.Response(200, content=iter(body),
                              headers={"content-type": "text/event-stream"})
    return httpx.MockTransport(handle)


def hand_written(client: httpx.Client) -> Iterator[str]:
    """The loop rag.generation.OpenAIGenerator used before this benchmark."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client.stream("POST", "http://llm.local/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                choices = json.loads(data).get("choices") or []
            except json.JSONDecodeError:
                continue
            for choice in choices:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield str(piece)


def maintained(client: openai.OpenAI) -> Iterator[str]:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content


def measure(run: Any, streams: int) -> dict[str, float]:
    first_s: list[float] = []
    pieces = 0
    start = time.perf_counter()
    for _ in range(streams):
        began = time.perf_counter()
        for i, _piece in enumerate(run()):
            if i == 0:
                first_s.append(time.perf_counter() - began)
            pieces += 1
    elapsed = time.perf_counter() - start
    first_s.sort()
    return {"tokens_per_second": round(pieces / elapsed),
            "first_piece_ms_median": round(first_s[len(first_s) // 2] * 1e3, 3),
            "us_per_token": round(elapsed / pieces * 1e6, 2)}


def edge_case_body() -> list[bytes]:
    ok = {"choices": [{"index": 0, "delta": {"content": "a"}}]}
    events = ["data: " + json.dumps(ok),
              ": keep-alive comment",
              'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "b"}}]}',
              "data: " + json.dumps({"error": {"message": "generation failed"}}),
              "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "c"}}]}),
              "data: [DONE]"]
    return [f"{event}\n\n".encode() for event in events]


def edge_cases() -> dict[str, Any]:
    body = edge_case_body()
    out: dict[str, Any] = {}
    for name, run in (
        ("hand_written", lambda: hand_written(httpx.Client(transport=transport(body)))),
        ("openai", lambda: maintained(openai.OpenAI(
            base_url="http://llm.local/v1", api_key="unused", max_retries=0,
            http_client=httpx.Client(transport=transport(body))))),
    ):
        pieces: list[str] = []
        try:
            pieces.extend(run())
            out[name] = {"pieces": pieces, "raised": None}
        except Exception as exc:  # what each reports for the error event
            out[name] = {"pieces": pieces, "raised": f"{type(exc).__name__}: {exc}"[:120]}
    out["expected"] = ("pieces a, b (the split data field joined), then the error raised; "
                       "never c after an error")
    return out


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import openai; print(time.perf_counter() - t)"
    best = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout) for _ in range(3))
    return round(best, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2_000)
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    body = sse_body(args.tokens)
    raw = httpx.Client(transport=transport(body))
    client = openai.OpenAI(base_url="http://llm.local/v1", api_key="unused", max_retries=0,
                           http_client=httpx.Client(transport=transport(body)))
    rounds: dict[str, list[dict[str, float]]] = {"hand_written": [], "openai": []}
    for _ in range(3):  # alternate, so a noisy spell falls on both
        rounds["hand_written"].append(measure(lambda: hand_written(raw), args.streams))
        rounds["openai"].append(measure(lambda: maintained(client), args.streams))
    best = {k: max(v, key=lambda r: r["tokens_per_second"]) for k, v in rounds.items()}
    print(json.dumps({
        "benchmark": "llm_stream_client", "tokens_per_stream": args.tokens,
        "streams": args.streams, "figure": best["openai"]["tokens_per_second"],
        "baseline": best["hand_written"]["tokens_per_second"],
        "ratio": round(best["openai"]["tokens_per_second"]
                       / best["hand_written"]["tokens_per_second"], 3),
        "best_round": best, "rounds": rounds, "import_s": import_seconds(),
        "edge_cases": edge_cases(),
    }, indent=2))


if __name__ == "__main__":
    main()
