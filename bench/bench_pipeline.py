"""The request pipeline's own cost: in-process ASGI calls with every protection on and off.

Drives ``GET /options/AAPL`` through the real pipeline and FastAPI app (route, handler,
error handlers; fake market services answering a small chain) without a server or a
network, so the figure is this thread's CPU time per request and other processes' load adds
less noise than in ``bench_rest.py``. Protections on: rate limit (in-process GCRA),
address allow and deny lists, trusted proxies, 200 revoked tokens; off: rate limit
disabled, no lists, no revocations. Also the bare FastAPI app (no pipeline at all).
Alternates the three BENCH_ROUNDS times (default 5) and prints microseconds per request
(median of rounds) and ``on_vs_off`` as a throughput ratio.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402
from core.settings import Settings  # noqa: E402
from market.cache import InMemoryCache  # noqa: E402
from serve.app import create_api  # noqa: E402
from serve.auth import TokenSigner  # noqa: E402
from serve.deps import Services, protect  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECRET = "bench-pipeline-secret-0123456789abcdef"
ON = {"rate_budget_viewer": 10**9, "rate_budget_per_ip": 10**9,
      "ip_allow": ("127.0.0.0/8", "::1/128", "10.0.0.0/8"),
      "ip_deny": ("192.0.2.0/24", "2001:db8::/32"), "trusted_proxies": ("198.51.100.0/24",)}
OFF = {"rate_limit_enabled": False}


class FakeGateway:
    """Answers the chain route from memory (a fixed small chain)."""

    symbols = ("AAPL", "MSFT")
    body = (b'{"symbol":"AAPL","underlying_price":189.37,"as_of":"2026-12-02T15:30:00Z",'
            b'"model":{"name":"black_scholes_merton","rate":0.045,"dividend_yield":0.0},'
            b'"contracts":[]}')

    async def chain_json(self, symbol: str, flt: Any) -> bytes:
        return self.body


def _app(overrides: dict[str, Any], *, pipeline: bool = True) -> tuple[Any, str]:
    api = create_api()
    settings = Settings(secret_key=SECRET, symbols="AAPL,MSFT", **overrides)
    signer = TokenSigner(SECRET)
    services = Services(settings=settings, signer=signer, cache=InMemoryCache(),
                        market=FakeGateway())
    api.state.services = services
    return (protect(api) if pipeline else api), signer.issue("viewer", "bench")


async def _drive(app: Any, token: str, requests: int) -> float:
    """CPU seconds per request of ``requests`` sequential GET /options/AAPL calls."""
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/options/AAPL", "raw_path": b"/options/AAPL", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8765),
             "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.thread_time()  # CPU of this thread: others' load adds less noise
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.thread_time() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {set(statuses)}")
    return elapsed / requests


async def main_async() -> dict[str, Any]:
    arms = {"on": _app(ON), "off": _app(OFF), "bare_fastapi": _app(OFF, pipeline=False)}
    if arms["on"][0].security_of() is not None:  # 200 revocations while on
        security = arms["on"][0].security_of()
        for i in range(200):
            await security.revocations.revoke("jti", f"revoked{i:05d}")
    for app, token in arms.values():
        await _drive(app, token, 200)  # warm-up
    rounds: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(ROUNDS):
        for name, (app, token) in arms.items():
            rounds[name].append(await _drive(app, token, REQUESTS) * 1e6)
    median = {name: statistics.median(values) for name, values in rounds.items()}
    return {"benchmark": "pipeline_in_process", "requests_per_round": REQUESTS,
            "rounds": ROUNDS, "us_per_request": median,
            "protections_cost_us": median["on"] - median["off"],
            "pipeline_cost_us": median["off"] - median["bare_fastapi"],
            "on_vs_off": median["off"] / median["on"], "target_on_vs_off": 0.9}


if __name__ == "__main__":
    emit(asyncio.run(main_async()))
