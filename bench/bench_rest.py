"""REST throughput: GET /options/{symbol} with every protection on, off, and bare uvicorn.

Starts `marketray serve` (market only) twice in one run: first with the protections on
(rate limit with budgets no client reaches, an IP allow and deny list, trusted proxies,
and a revocation list holding entries, so every request pays each check), then with
them off (rate limit disabled, no address lists, empty revocation list). Against each,
a bare uvicorn process serving the same chain bytes is driven alternately with wrk (32
connections) BENCH_ROUNDS times (default 3), so a noisy host's slow spell falls on both.
Prints the medians, each service's median ratio to bare uvicorn, and ``on_vs_off``: the
on service's ratio over the off service's (target >= 0.9). MARKETRAY_SERVE_INGRESS=proxy
measures Serve's Python proxy instead of the HAProxy ingress (the default);
BENCH_REDIS_URL puts the rate limit and revocations on that Redis (protections on only).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bare_server, emit, wrk  # noqa: E402
from serve.local_service import free_port, start_service  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
REVOKED = 200  # revocation entries while protections are on

PROTECTIONS_ON = {"MARKETRAY_RATE_LIMIT_ENABLED": "1", "MARKETRAY_RATE_BUDGET_VIEWER": "1000000000",
                  "MARKETRAY_RATE_BUDGET_PER_IP": "1000000000",
                  "MARKETRAY_IP_ALLOW": "127.0.0.0/8,::1/128,10.0.0.0/8",
                  "MARKETRAY_IP_DENY": "192.0.2.0/24,2001:db8::/32",
                  "MARKETRAY_TRUSTED_PROXIES": "198.51.100.0/24"}
PROTECTIONS_OFF = {"MARKETRAY_RATE_LIMIT_ENABLED": "0"}


def measure(env: dict[str, str], label: str) -> dict[str, Any]:
    """Drive one service and the bare baseline alternately; return the medians."""
    ingress = os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy")
    replicas = os.environ.get("MARKETRAY_INGRESS_REPLICAS", "1")
    with start_service({"MARKETRAY_SIM_RATE": "2000", "MARKETRAY_SERVE_INGRESS": ingress,
                        "MARKETRAY_INGRESS_REPLICAS": replicas, **env},
                       args=("--no-knowledge", "--no-assistant")) as svc:
        headers = svc.auth("viewer", "bench")
        if label == "on":
            admin = svc.auth("admin", "bench-admin")
            for i in range(REVOKED):
                httpx.post(f"{svc.base_url}/admin/revocations", headers=admin, timeout=10,
                           json={"jti": f"revoked{i:05d}"}).raise_for_status()
        url = f"{svc.base_url}/options/AAPL"
        payload = httpx.get(url, headers=headers, timeout=10).content
        path = Path(tempfile.mkdtemp()) / "chain.json"
        path.write_bytes(payload)
        with bare_server(path, free_port()) as bare_url:
            wrk(url, seconds=2, headers=headers)  # warm-up
            wrk(bare_url, seconds=2)
            rounds = [(wrk(url, seconds=SECONDS, headers=headers), wrk(bare_url, seconds=SECONDS))
                      for _ in range(ROUNDS)]
    ours = [r[0] for r in rounds]
    bare = [r[1] for r in rounds]
    return {"marketray": _median_of(ours), "baseline_bare_uvicorn": _median_of(bare),
            "ratio_to_bare": statistics.median(
                o["requests_per_s"] / b["requests_per_s"] for o, b in rounds),
            "non_2xx": sum(o["non_2xx"] for o in ours), "payload_bytes": len(payload),
            "per_round": [{"marketray_rps": o["requests_per_s"], "bare_rps": b["requests_per_s"]}
                          for o, b in rounds]}


def main() -> None:
    on_env = dict(PROTECTIONS_ON)
    if os.environ.get("BENCH_REDIS_URL"):
        on_env["MARKETRAY_REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    on = measure(on_env, "on")
    off = measure(PROTECTIONS_OFF, "off")
    emit({"benchmark": "rest_options_chain", "connections": 32,
          "ingress": os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy"),
          "ingress_replicas": int(os.environ.get("MARKETRAY_INGRESS_REPLICAS", "1")),
          "rounds": ROUNDS, "seconds_per_run": SECONDS,
          "redis": bool(os.environ.get("BENCH_REDIS_URL")),
          "protections_on": on, "protections_off": off,
          "on_vs_off": on["ratio_to_bare"] / off["ratio_to_bare"],
          "target_on_vs_off": 0.9, "ratio_throughput": on["ratio_to_bare"],
          "target_ratio": 0.8})


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over ``runs``."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


if __name__ == "__main__":
    main()
