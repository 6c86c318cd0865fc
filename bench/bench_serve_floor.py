"""The REST ceiling Ray Serve leaves: do-nothing Serve apps vs bare FastAPI/uvicorn.

``bench_rest`` compares ``GET /options/{symbol}`` through marketray with a bare
uvicorn process serving the same bytes. This benchmark takes marketray's code out of
that path. Three Serve apps, one replica each, return one fixed body (no auth, no
lookup) behind the ingress ``marketray serve`` configures (HAProxy by default,
``MARKETRAY_SERVE_INGRESS=proxy`` for Serve's Python proxy):

- ``call``: a deployment's plain ``__call__(request)``, Serve's own HTTP handler;
- ``asgi``: ``@serve.ingress`` of a raw ASGI callable (what a hand-written fast path
  ahead of an app gets);
- ``fastapi``: ``@serve.ingress`` of a FastAPI app with one route (what an app built
  on FastAPI routes gets).

Each round drives the bare process (``bench/bare_server.py``, same bytes) and then
each app with wrk at 32 connections, ``BENCH_ROUNDS`` rounds. The ratio of each app
to the bare process bounds what an app of that style served by Ray Serve can reach
against that baseline on this machine.

    python bench/bench_serve_floor.py [--bytes N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bare_server, emit, wait_until_up, wrk  # noqa: E402
from serve.local_service import free_port  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CHAIN_BYTES = 200_000  # about the size of a simulated AAPL chain


def payload_of(size: int) -> bytes:
    """A JSON document of about ``size`` bytes, shaped like an option chain."""
    row = {"strike": 190.0, "bid": 4.15, "ask": 4.25, "iv": 0.2431, "delta": 0.5123,
           "gamma": 0.0412, "theta": -0.0871, "vega": 0.1932, "volume": 1234,
           "open_interest": 56789}
    rows = max(1, size // len(json.dumps(row)))
    return json.dumps({"symbol": "AAPL", "contracts": [row] * rows}).encode()


def start_floor_apps(path: Path, port: int, ingress: str) -> list[str]:
    """Deploy the do-nothing apps on a local Ray with marketray's ingress settings."""
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    from core.settings import Settings
    from serve.cli import _ingress_environment

    data_dir = Path(tempfile.mkdtemp(prefix="serve-floor-"))
    os.environ.update(_ingress_environment(Settings(serve_ingress=ingress, data_dir=data_dir)))
    import ray
    from ray import serve

    ray.init(include_dashboard=False, log_to_driver=False)
    body = path.read_bytes()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    options = {"max_ongoing_requests": 2_500, "ray_actor_options": {"num_cpus": 0},
               "logging_config": {"enable_access_log": False}}

    @serve.deployment(**options)
    class Call:
        async def __call__(self, request: Request) -> Response:
            return Response(body, media_type="application/json")

    class Raw:  # an object, not a function: serve.ingress calls functions as app builders
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":  # Serve runs the app's startup and shutdown
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    @serve.deployment(**options)
    @serve.ingress(Raw())
    class Asgi:
        pass

    api = FastAPI()

    @api.get("/options/{symbol}")
    async def options_chain(symbol: str) -> Response:
        return Response(body, media_type="application/json")

    @serve.deployment(**options)
    @serve.ingress(api)
    class Routes:
        pass

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    apps = {"call": Call, "asgi": Asgi, "fastapi": Routes}
    for name, deployment in apps.items():
        serve.run(deployment.bind(), name=name, route_prefix=f"/{name}", blocking=False)
    return list(apps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=CHAIN_BYTES)
    args = parser.parse_args()
    ingress = os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy")
    path = Path(tempfile.mkdtemp()) / "chain.json"
    path.write_bytes(payload_of(args.bytes))
    serve_port, bare_port = free_port(), free_port()
    names = start_floor_apps(path, serve_port, ingress)
    try:
        with bare_server(path, bare_port) as bare_url:
            urls = {"bare": bare_url, **{
                name: f"http://127.0.0.1:{serve_port}/{name}/options/AAPL" for name in names}}
            for url in urls.values():
                wait_until_up(url, 120.0)
                wrk(url, seconds=2)  # warm-up
            rounds = [{name: wrk(url, seconds=SECONDS) for name, url in urls.items()}
                      for _ in range(ROUNDS)]
    finally:
        from ray import serve

        serve.shutdown()
    emit({"benchmark": "serve_floor_fixed_bytes", "payload_bytes": path.stat().st_size,
          "connections": 32, "ingress": ingress, "rounds": ROUNDS,
          "seconds_per_run": SECONDS,
          "baseline_bare_uvicorn_rps": statistics.median(r["bare"]["requests_per_s"]
                                                         for r in rounds),
          "apps": {name: {
              "rps": statistics.median(r[name]["requests_per_s"] for r in rounds),
              "p99_ms": statistics.median(r[name]["p99_ms"] for r in rounds),
              "ratio_throughput": statistics.median(
                  r[name]["requests_per_s"] / r["bare"]["requests_per_s"] for r in rounds),
          } for name in names},
          "per_round": [{name: run["requests_per_s"] for name, run in r.items()}
                        for r in rounds],
          "marketray_target_ratio": 0.8})


if __name__ == "__main__":
    main()
