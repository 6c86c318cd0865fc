"""REST throughput: GET /options/{symbol} through marketray vs bare FastAPI/uvicorn.

Starts `marketray serve` (market only), fetches the AAPL chain once, starts a
bare uvicorn process serving those same bytes, then drives each with wrk (32
connections) in turn. Prints requests/s, p50/p99 and the ratio. Set
MARKETRAY_SERVE_INGRESS=haproxy to measure Serve's HAProxy ingress instead
of the default proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit, wrk  # noqa: E402
from tests.integration.harness import free_port, start_service  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))


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
        port = free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_server.py")),
                                 str(path), str(port)])
        try:
            bare_url = f"http://127.0.0.1:{port}/options/AAPL"
            for _ in range(100):
                try:
                    httpx.get(bare_url, timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            wrk(url, seconds=2, headers=headers)  # warm-up
            ours = wrk(url, seconds=SECONDS, headers=headers)
            baseline = wrk(bare_url, seconds=SECONDS)
        finally:
            bare.terminate()
            bare.wait()
    emit({"benchmark": "rest_options_chain", "payload_bytes": len(payload),
          "connections": 32, "ingress": ingress, "ingress_replicas": int(replicas),
          "marketray": ours, "baseline_bare_uvicorn": baseline,
          "ratio_throughput": ours["requests_per_s"] / baseline["requests_per_s"],
          "target_ratio": 0.8})


if __name__ == "__main__":
    main()
