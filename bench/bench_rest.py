"""REST throughput: GET /options/{symbol} through marketray vs bare FastAPI/uvicorn.

Starts `marketray serve` (market only), fetches the AAPL chain once, starts a
bare uvicorn process serving those same bytes, then drives each with wrk (32
connections), alternating BENCH_ROUNDS times (default 3) so that a noisy host's
slow spell falls on both. Prints each round, the median requests/s and p99 of
each server and the median of the per-round ratios. MARKETRAY_SERVE_INGRESS=proxy
measures Serve's Python proxy instead of the HAProxy ingress (the default).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bare_server, emit, wrk  # noqa: E402
from serve.local_service import free_port, start_service  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main() -> None:
    ingress = os.environ.get("MARKETRAY_SERVE_INGRESS", "haproxy")
    replicas = os.environ.get("MARKETRAY_INGRESS_REPLICAS", "1")
    with start_service({"MARKETRAY_SIM_RATE": "2000", "MARKETRAY_SERVE_INGRESS": ingress,
                        "MARKETRAY_INGRESS_REPLICAS": replicas},
                       args=("--no-knowledge", "--no-assistant")) as svc:
        headers = svc.auth("viewer")
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
    baseline = [r[1] for r in rounds]
    emit({"benchmark": "rest_options_chain", "payload_bytes": len(payload),
          "connections": 32, "ingress": ingress, "ingress_replicas": int(replicas),
          "rounds": ROUNDS, "seconds_per_run": SECONDS,
          "marketray": _median_of(ours), "baseline_bare_uvicorn": _median_of(baseline),
          "ratio_throughput": statistics.median(
              o["requests_per_s"] / b["requests_per_s"] for o, b in rounds),
          "per_round": [{"marketray_rps": o["requests_per_s"], "bare_rps": b["requests_per_s"]}
                        for o, b in rounds],
          "target_ratio": 0.8})


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over ``runs``."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


if __name__ == "__main__":
    main()
