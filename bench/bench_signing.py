"""Cost of signed WebSocket frames: the server's seal and check against an unsigned frame.

A market frame as the hub encodes it (one MarketData with eleven indicators) is sealed
in a signed envelope (parse, canonical re-encoding, HMAC-SHA256, encoding) and a signed
client frame is checked (HMAC, window, nonce); the baseline is what the server does per
frame without signing: encode the frame once (``orjson.dumps``). Prints microseconds
per frame (best of BENCH_REPEATS timings of BENCH_FRAMES frames) and the ratio.

Also the guard's cost on every connection's frames, signing off: a frame sent through
``GuardedSocket.send`` against the same frame sent to the same no-op ASGI ``send``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402
from serve.security.signing import FrameSigner, FrameVerifier  # noqa: E402
from serve.security.websocket import GuardedSocket  # noqa: E402

FRAMES = int(os.environ.get("BENCH_FRAMES", "20000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
INDICATORS = ("sma_20", "ema_20", "rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper",
              "bb_middle", "bb_lower", "atr_14", "vwap")


def _best_us(func, items: list) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for item in items:
            func(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


async def _guard_overhead(texts: list[str]) -> tuple[float, float]:
    """Best per-frame time of a no-op send, directly and through the guard (signing off)."""
    async def send(message: dict) -> None:
        return None

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {}

    guard = GuardedSocket(receive, send, max_frame_bytes=65536, rate=20, burst=40,
                          still_valid=lambda: None)
    messages = [{"type": "websocket.send", "text": t} for t in texts]
    results = []
    for target in (send, guard.send):
        best = float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            for message in messages:
                await target(message)
            best = min(best, time.perf_counter() - started)
        results.append(best / len(messages) * 1e6)
    return results[0], results[1]


def main() -> None:
    data = {"symbol": "AAPL", "price": 189.37, "volume": 1_234_567.0,
            "timestamp": "2026-12-02T15:30:00.123456+00:00",
            "indicators": {name: 100.0 + i / 7 for i, name in enumerate(INDICATORS)},
            "bid": 189.36, "ask": 189.38}
    frames = [{"type": "market", "seq": i, "data": data} for i in range(FRAMES)]
    texts = [orjson.dumps(f).decode() for f in frames]
    key = b"f" * 64
    verifier = FrameVerifier(key, window_s=5.0)
    client = FrameSigner(key)
    unsigned_us = _best_us(orjson.dumps, frames)
    seal_us = _best_us(verifier.seal, texts)
    signed_client = [json.loads(client.sign({"action": "ping"})) for _ in range(FRAMES)]

    def check(frame: dict) -> None:
        verifier.nonces._seen.clear()  # each repeat checks the same nonces afresh
        verifier.check(dict(frame))

    check_us = _best_us(check, signed_client)
    direct_us, guarded_us = asyncio.run(_guard_overhead(texts))
    emit({"benchmark": "ws_signed_frames",
          "unsigned_send_direct_us": direct_us, "unsigned_send_through_guard_us": guarded_us,
          "frames": FRAMES, "frame_bytes": len(texts[0]),
          "baseline_encode_us": unsigned_us, "seal_us": seal_us,
          "check_client_frame_us": check_us,
          "seal_ratio_to_encode": seal_us / unsigned_us})


if __name__ == "__main__":
    main()
