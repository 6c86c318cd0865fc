"""WebSocket fan-out: N concurrent clients each subscribed to 10 symbols.

Starts `marketray serve` (market only, 100 symbols), opens BENCH_CLIENTS
(default 1,000) WebSocket clients in this process, each subscribing to 10
symbols, and counts delivered market frames for BENCH_SECONDS. Latency is the
receive time minus the frame's last-trade time. Baseline in the same run: one
client alone on the same server (the latency floor of the path). Reports
messages/s, p50/p99, and per-client counts (min, median) to show no client
starves. The client process shares the machine's 2 cores with the server, so
client-side parsing is part of the measured latency.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402
from tests.integration.harness import start_service  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
SYMBOLS = tuple(f"SYM{i:03d}" for i in range(100))


async def client(url: str, symbols: list[str], stop_at: float, start_at: float,
                 latencies: list[float]) -> int:
    import websockets

    count = 0
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(orjson.dumps({"action": "subscribe", "symbols": symbols}).decode())
        while True:
            remaining = stop_at - time.time()
            if remaining <= 0:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), remaining)
            except TimeoutError:
                break
            now = time.time()
            if now < start_at or b'"market"' not in (raw if isinstance(raw, bytes)
                                                    else raw.encode()[:20]):
                continue
            count += 1
            if count % 5 == 0:  # sample latency on every 5th frame to spare the client CPU
                data = orjson.loads(raw)["data"]
                latencies.append((now - datetime.fromisoformat(data["timestamp"]).timestamp())
                                 * 1e3)
    return count


async def run_clients(url: str, n: int, seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(0)
    latencies: list[float] = []
    start_at = time.time() + 15.0  # connect everyone first, then measure
    stop_at = start_at + seconds
    tasks = []
    for _ in range(n):
        symbols = [SYMBOLS[i] for i in rng.choice(len(SYMBOLS), 10, replace=False)]
        tasks.append(asyncio.create_task(client(url, symbols, stop_at, start_at, latencies)))
        await asyncio.sleep(0.005)
    counts = np.array(await asyncio.gather(*tasks, return_exceptions=False))
    lat = np.array(latencies)
    return {"clients": n, "messages": int(counts.sum()),
            "messages_per_s": float(counts.sum() / seconds),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "min_client_messages": int(counts.min()),
            "median_client_messages": float(np.median(counts)),
            "starved_clients": int((counts == 0).sum())}


def main() -> None:
    env = {"MARKETRAY_SYMBOLS": ",".join(SYMBOLS), "MARKETRAY_SIM_RATE": "20000",
           "MARKETRAY_SERVE_INGRESS": os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy")}
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       ready_path=f"/market/{SYMBOLS[0]}") as svc:
        url = f"{svc.ws_url}/?token={svc.token('viewer')}"
        single = asyncio.run(run_clients(url, 1, min(SECONDS, 10.0)))
        many = asyncio.run(run_clients(url, CLIENTS, SECONDS))
    emit({"benchmark": "websocket_fanout", "symbols_per_client": 10,
          "ingress": env["MARKETRAY_SERVE_INGRESS"],
          "fanout": many, "baseline_single_client": single,
          "p99_ratio_vs_single_client": many["p99_ms"] / single["p99_ms"],
          "target_p99_ms": 100})


if __name__ == "__main__":
    main()
