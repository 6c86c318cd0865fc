"""Start a real ``marketray serve`` (its own local Ray cluster) for tests and benchmarks.

The service gets a fixed throwaway signing secret (``SECRET``) so the caller can sign
tokens for it; never use this module to run a service anyone else reaches.

    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT"}) as svc:
        httpx.get(f"{svc.base_url}/market/AAPL", headers=svc.auth("viewer"))
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from serve.auth import Role, TokenSigner
from serve.cli import pick_port

SECRET = "integration-test-secret-0123456789abcdef"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1, outside the ephemeral range (see serve.cli)."""
    return pick_port()


@dataclass
class RunningService:
    """A started service: where it listens and how to sign tokens for it."""

    base_url: str
    ws_url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def token(self, role: Role = "admin", subject: str = "tester") -> str:
        return TokenSigner(SECRET).issue(role, subject)

    def auth(self, role: Role = "admin", subject: str = "tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_ready(svc: RunningService, timeout_s: float, ready_path: str) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if svc.process.poll() is not None:
            raise RuntimeError(f"marketray serve exited ({svc.process.returncode}):\n"
                               f"{svc.log_tail()}")
        try:
            response = httpx.get(f"{svc.base_url}{ready_path}", headers=svc.auth(), timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1.0)
    raise TimeoutError(f"service not ready after {timeout_s}s ({last}):\n{svc.log_tail()}")


@contextlib.contextmanager
def start_service(env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                  timeout_s: float = 240.0, ready_path: str = "/market/AAPL",
                  data_dir: Path | None = None) -> Iterator[RunningService]:
    """Run ``marketray serve`` on a free port until the block ends."""
    port = free_port()
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="marketray-it-"))
    log_path = data_dir / "serve.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Each service gets a Ray cluster of its own: a RAY_ADDRESS left by ray.init() in this
    # process (other test modules) would make the child join that cluster instead.
    inherited = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    child_env = {**inherited, "MARKETRAY_PORT": str(port), "MARKETRAY_HOST": "127.0.0.1",
                 "MARKETRAY_DATA_DIR": str(data_dir), "MARKETRAY_SECRET_KEY": SECRET,
                 "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                 "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serve.cli", "serve", *args], cwd=REPO, env=child_env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    svc = RunningService(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", data_dir,
                         log_path, process)
    try:
        _wait_ready(svc, timeout_s, ready_path)
        yield svc
    finally:
        # The driver first, so it can shut Serve (and HAProxy) and Ray down in order;
        # then whatever is left of the process group.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
