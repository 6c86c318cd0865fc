"""WebSocket fan-out: N concurrent clients each subscribed to 10 symbols.

Starts `marketray serve` (market only, 100 symbols at 20,000 ticks/s), then opens
BENCH_CLIENTS (default 1,000) WebSocket clients spread over BENCH_CLIENT_PROCS
(default 4) load-generator processes. The clients use picows (a Cython WebSocket
client) on uvloop, so the load generator costs as little CPU as it can: it shares
the machine's 2 cores with the server, so its processes run at nice -10 (when
allowed): clients on machines of their own would not wait for the server's CPU.
Each client subscribes to 10 random symbols; for BENCH_SECONDS every market frame
is counted and its latency taken: receive time minus the frame's last-trade time
(the tick's creation in the simulator). Baseline in the same run: one client
alone on the same server (the latency floor of the path). Prints messages/s,
p50/p99, per-client counts (min, median, starved = none at all) and the hub's
counters from /health.

The latencies are also split by how busy each symbol is in the simulator (quartiles
of its message rate, from the feed's own per-symbol parameters). A frame carries
the newest tick the hub found; when the hub cannot send every update (it conflates),
a quiet symbol's newest tick is on average as old as its gap between ticks, so the
tail comes from the quiet symbols, and the busiest quartile shows the path's own delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import resource
import sys
import time
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402
from serve.local_service import start_service  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "1000"))
PROCS = int(os.environ.get("BENCH_CLIENT_PROCS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
SYMBOLS = tuple(f"SYM{i:03d}" for i in range(100))
SIM_RATE = 20_000.0
CONNECT_GRACE_S = 20.0  # everyone connects and subscribes before the clock starts
CLIENT_NICE = int(os.environ.get("BENCH_CLIENT_NICE", "-10"))  # needs root; else ignored


def _client_process(url: str, subscriptions: list[list[str]], start_at: float, stop_at: float,
                    out: Any) -> None:
    """One load-generator process: run its clients, put (counts, latencies, cpu_s, failed)."""
    import uvloop
    from picows import WSListener, WSMsgType, ws_connect

    # Real clients have CPUs of their own; a co-located load generator that loses the CPU
    # to the server measures its own queueing instead (frames pile up in socket buffers).
    with contextlib.suppress(OSError):
        os.nice(CLIENT_NICE)

    # (seconds into the run, latency ms) pairs, flat in a C array: ~100,000 tuples in a list
    # made this process's full garbage collections pause it 45-105 ms mid-run, and frames
    # waiting in its socket meanwhile were timed late (the load generator's delay, not the
    # server's).
    latencies = array("d")  # (seconds into the run, latency ms, symbol index) triples
    index = {symbol: i for i, symbol in enumerate(SYMBOLS)}

    class Client(WSListener):  # type: ignore[misc]
        def __init__(self, symbols: list[str]) -> None:
            self.symbols = symbols
            self.count = 0

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT,
                           orjson.dumps({"action": "subscribe", "symbols": self.symbols}))

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return
            now = time.time()
            if now < start_at or now >= stop_at:
                return
            payload = frame.get_payload_as_bytes()
            if not payload.startswith(b'{"type":"market"'):
                return
            self.count += 1
            data = orjson.loads(payload)["data"]
            latencies.append(now - start_at)
            latencies.append((now - datetime.fromisoformat(data["timestamp"]).timestamp()) * 1e3)
            latencies.append(index[data["symbol"]])

    async def run() -> tuple[list[int], int]:
        gate = asyncio.Semaphore(32)

        async def connect(symbols: list[str]) -> tuple[Any, Any] | None:
            async with gate:
                try:
                    return await ws_connect(lambda: Client(symbols), url,
                                            websocket_handshake_timeout=30)
                except Exception:
                    return None

        connections = await asyncio.gather(*(connect(s) for s in subscriptions))
        gc.freeze()  # what exists now lives to the end: later collections skip it
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        counts = [c[1].count if c else 0 for c in connections]
        for c in connections:
            if c:
                c[0].disconnect()
        return counts, sum(c is None for c in connections)

    cpu = time.process_time()
    counts, failed = uvloop.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((counts, latencies.tolist(), time.process_time() - cpu, failed, usage.ru_maxrss))


def run_clients(url: str, n: int, procs: int, seconds: float) -> dict[str, Any]:
    """Drive ``n`` clients from ``procs`` processes for ``seconds``; aggregate their figures."""
    rng = np.random.default_rng(0)
    subscriptions = [[SYMBOLS[i] for i in rng.choice(len(SYMBOLS), 10, replace=False)]
                     for _ in range(n)]
    start_at = time.time() + CONNECT_GRACE_S
    stop_at = start_at + seconds
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_client_process,
                           args=(url, subscriptions[k::procs], start_at, stop_at, out))
               for k in range(min(procs, n))]
    for w in workers:
        w.start()
    results = [out.get(timeout=CONNECT_GRACE_S + seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    counts = np.array([c for r in results for c in r[0]])
    samples = np.array([x for r in results for x in r[1]]).reshape(-1, 3)
    lat = samples[:, 1]
    per_second = [float(np.percentile(lat[(samples[:, 0] >= t) & (samples[:, 0] < t + 1)], 99))
                  if ((samples[:, 0] >= t) & (samples[:, 0] < t + 1)).any() else float("nan")
                  for t in range(int(seconds))]
    return {"clients": n, "client_processes": len(workers), "client_nice": CLIENT_NICE,
            "failed_connections": int(sum(r[3] for r in results)),
            "messages": int(counts.sum()), "messages_per_s": float(counts.sum() / seconds),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "max_ms": float(lat.max()) if lat.size else float("nan"),
            "min_client_messages": int(counts.min()),
            "median_client_messages": float(np.median(counts)),
            "starved_clients": int((counts == 0).sum()),
            "load_generator_cpu_s_per_s": sum(r[2] for r in results) / seconds,
            "p99_ms_by_second": [round(x, 1) for x in per_second],
            "by_symbol_activity": by_activity(lat, samples[:, 2].astype(int))}


def symbol_rates() -> np.ndarray:
    """Each symbol's mean stock messages/s in the service's simulator (same seed and rate)."""
    from core.settings import Settings
    from market.feeds.sim_process import draw_params

    activity = draw_params(list(SYMBOLS), Settings().sim_seed).activity
    return np.asarray(SIM_RATE * activity / activity.sum())


def by_activity(lat: np.ndarray, symbol: np.ndarray, tiers: int = 4) -> list[dict[str, Any]]:
    """Latency percentiles per quartile of symbols by simulated message rate, busiest first."""
    rates = symbol_rates()
    order = np.argsort(-rates)
    out = []
    for part in np.array_split(order, tiers):
        chosen = np.isin(symbol, part)
        x = lat[chosen]
        out.append({"symbols": len(part),
                    "messages_per_s_per_symbol": [round(float(rates[part].min()), 1),
                                                  round(float(rates[part].max()), 1)],
                    "frames": int(x.size),
                    "p50_ms": round(float(np.percentile(x, 50)), 1) if x.size else None,
                    "p99_ms": round(float(np.percentile(x, 99)), 1) if x.size else None})
    return out


def main() -> None:
    env = {"MARKETRAY_SYMBOLS": ",".join(SYMBOLS), "MARKETRAY_SIM_RATE": str(SIM_RATE),
           "MARKETRAY_SERVE_INGRESS": os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy"),
           "MARKETRAY_INGRESS_REPLICAS": os.environ.get("MARKETRAY_INGRESS_REPLICAS", "1"),
           # every client uses one token: the per-subject cap would refuse all but a few
           "MARKETRAY_WS_MAX_CONNECTIONS_PER_SUBJECT": str(CLIENTS + 10)}
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       ready_path=f"/market/{SYMBOLS[0]}") as svc:
        url = f"{svc.ws_url}/?token={svc.token('viewer')}"
        single = run_clients(url, 1, 1, min(SECONDS, 10.0))
        many = run_clients(url, CLIENTS, PROCS, SECONDS)
        hub = httpx.get(f"{svc.base_url}/health", timeout=10).json()["checks"].get("stream")
    emit({"benchmark": "websocket_fanout", "symbols_per_client": 10,
          "ingress": env["MARKETRAY_SERVE_INGRESS"],
          "ingress_replicas": int(env["MARKETRAY_INGRESS_REPLICAS"]),
          "fanout": many, "baseline_single_client": single,
          "p99_ratio_vs_single_client": many["p99_ms"] / single["p99_ms"],
          "hub_after_run": hub, "target_p99_ms": 100})


if __name__ == "__main__":
    main()
