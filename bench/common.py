"""Helpers shared by the benchmarks: wrk runs, the bare baseline server and JSON output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's one JSON object."""
    print(json.dumps(result, indent=2, default=float))
    sys.stdout.flush()


@contextmanager
def bare_server(payload: Path, port: int, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``bench/bare_server.py`` serving ``payload``; yield its ``/options/AAPL`` URL."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_server.py")),
                                str(payload), str(port)])
    url = f"http://127.0.0.1:{port}/options/AAPL"
    try:
        wait_until_up(url, timeout_s)
        yield url
    finally:
        process.terminate()
        process.wait()


def wait_until_up(url: str, timeout_s: float) -> None:
    """Return once ``url`` answers 200; exit with a message after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout_s:.0f} s")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, *, connections: int = 32, seconds: int = 10, threads: int = 2,
        headers: dict[str, str] | None = None) -> dict[str, float]:
    """Run wrk against ``url``; return requests/s and latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"\s(50|75|90|99)%\s+([\d.]+(?:us|ms|s))", out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": rps, "p50_ms": pct.get("50", float("nan")),
            "p99_ms": pct.get("99", float("nan")),
            "non_2xx": float(errors.group(1)) if errors else 0.0}

def best_of(func: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(best thread CPU time, best wall time) of ``repeats`` calls after a warm-up."""
    func()
    cpu_best = wall_best = float("inf")
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.thread_time()
        func()
        cpu_best = min(cpu_best, time.thread_time() - cpu)
        wall_best = min(wall_best, time.perf_counter() - started)
    return max(cpu_best, 1e-9), wall_best
