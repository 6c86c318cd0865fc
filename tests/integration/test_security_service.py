"""Security black-box: a started service (two ingress replicas) over real HTTP, WebSocket and Redis.

One service for the module, behind Serve's Python proxy (which hands replicas the client's
address; Serve's HAProxy ingress does not, see docs/security.md), with a Redis server of
this module's own so it can be stopped and restarted. Clients bind 127.0.0.2 (an
untrusted address) or 127.0.0.3 (denied) to come from other addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from serve.auth import TokenSigner
from serve.local_service import REPO, SECRET, free_port, start_service
from serve.security.keyring import KEYRING_FILE, Keyring
from serve.security.signing import FrameSigner

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CANARY = "canary-9d1f7a3c5e2b4f6a8c0e1d3f5a7b9c2e"
BUDGET = 5  # viewer units per window
WINDOW_S = 10


class RedisServer:
    """A redis-server of this module's own, on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mr-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def svc(redis_server):
    env = {"MARKETRAY_SYMBOLS": "AAPL,MSFT", "MARKETRAY_INGRESS_REPLICAS": "2",
           "MARKETRAY_SERVE_INGRESS": "proxy",
           "MARKETRAY_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
           "MARKETRAY_TRUSTED_PROXIES": "127.0.0.1/32", "MARKETRAY_IP_DENY": "127.0.0.3/32",
           "MARKETRAY_RATE_BUDGET_VIEWER": str(BUDGET),
           "MARKETRAY_RATE_WINDOW_S": str(WINDOW_S), "MARKETRAY_KEY_GRACE_S": "4",
           "MARKETRAY_ALPACA_SECRET_KEY": CANARY, "MARKETRAY_ALPACA_KEY_ID": CANARY}
    data_dir = Path(tempfile.mkdtemp(prefix="mr-sec-"))
    env["RAY_TMPDIR"] = str(data_dir / "r")  # the cluster's logs, for the canary search
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       data_dir=data_dir) as running:
        yield running


def _client(source: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=20)


def _viewer(svc, subject: str) -> dict[str, str]:
    return svc.auth("viewer", subject)


def _count_allowed(svc, subject: str, requests: int) -> tuple[int, httpx.Response | None]:
    headers = _viewer(svc, subject)
    allowed, refused = 0, None
    with _client() as client:
        for _ in range(12):  # both replicas connect to Redis and load the script first
            client.get(f"{svc.base_url}/market/AAPL", headers=svc.auth("admin"))
        for _ in range(requests):
            response = client.get(f"{svc.base_url}/market/AAPL", headers=headers)
            assert response.status_code in (200, 429), response.text
            if response.status_code == 200:
                allowed += 1
            else:
                refused = response
    return allowed, refused


def test_request_over_budget_is_429_with_headers_and_retry_after_passes(svc):
    # Act: twice the budget from one subject, spread by the proxy over two replicas
    allowed, refused = _count_allowed(svc, "budget-a", 2 * BUDGET)

    # Assert: one budget shared by both replicas (through Redis)
    assert allowed == BUDGET, _cache_state(svc)
    assert refused is not None
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["request_id"] == refused.headers["x-request-id"]
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit()
    assert refused.headers["ratelimit-limit"] == str(BUDGET)
    assert refused.headers["ratelimit-remaining"] == "0"
    time.sleep(int(retry_after))
    with _client() as client:
        again = client.get(f"{svc.base_url}/market/AAPL", headers=_viewer(svc, "budget-a"))
    assert again.status_code == 200


def test_redis_away_falls_back_per_replica_and_degrades_then_shares_again(svc, redis_server):
    # Arrange: Redis goes away
    redis_server.stop()
    try:
        health = _health_until(svc, "degraded")
        # Act: each replica limits alone, at the budget divided by the replica count
        allowed_away, _ = _count_allowed(svc, "budget-b", 4 * BUDGET)
    finally:
        redis_server.start()
    healthy = _health_until(svc, "healthy")
    allowed_back, _ = _count_allowed(svc, "budget-c", 2 * BUDGET)

    # Assert
    assert health["checks"]["cache"]["status"] == "degraded"
    assert BUDGET // 2 <= allowed_away <= 2 * (BUDGET // 2)
    assert healthy["checks"]["cache"]["status"] == "ok"
    assert allowed_back == BUDGET, _cache_state(svc)


def _cache_state(svc) -> list[dict]:
    return [httpx.get(f"{svc.base_url}/health", timeout=20).json()["checks"]["cache"]
            for _ in range(4)]


def _health_until(svc, status: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{svc.base_url}/health", timeout=20).json()
        # both replicas must have noticed: six answers in a row
        if body["status"] == status and all(
                httpx.get(f"{svc.base_url}/health", timeout=20).json()["status"] == status
                for _ in range(5)):
            return body
        time.sleep(0.5)
    raise AssertionError(f"health never {status}: {body}")


def test_denied_network_gets_403_and_4403(svc):
    with _client("127.0.0.3") as client:
        response = client.get(f"{svc.base_url}/market/AAPL", headers=svc.auth("admin"))

    async def websocket_code() -> int:
        async with websockets.connect(f"{svc.ws_url}/ws/market?token={svc.token('admin')}",
                                      local_addr=("127.0.0.3", 0)) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            return info.value.rcvd.code

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "address_denied"
    assert asyncio.run(websocket_code()) == 4403


def test_forwarded_for_is_believed_only_from_a_trusted_peer(svc):
    spoof = {**svc.auth("admin"), "X-Forwarded-For": "127.0.0.3"}
    with _client("127.0.0.2") as untrusted, _client("127.0.0.1") as trusted:
        ignored = untrusted.get(f"{svc.base_url}/market/AAPL", headers=spoof)
        believed = trusted.get(f"{svc.base_url}/market/AAPL", headers=spoof)
    assert ignored.status_code == 200
    assert believed.status_code == 403


def test_revoked_jti_gets_401_and_its_websocket_closes_4401_within_2s(svc):
    token = svc.token("viewer", "revokee")
    jti = TokenSigner(SECRET).verify(token).jti

    async def scenario() -> tuple[int, float]:
        async with websockets.connect(f"{svc.ws_url}/ws/market?token={token}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
            revoke = await asyncio.to_thread(_cli, svc, "token", "revoke", "--jti", jti)
            assert revoke.returncode == 0, revoke.stderr
            started = time.monotonic()
            code = await _close_code(ws)
            return code, time.monotonic() - started

    code, took = asyncio.run(scenario())
    time.sleep(0.6)  # the other replica reloads the revocation list every 0.5 s
    response = httpx.get(f"{svc.base_url}/market/AAPL", timeout=20,
                         headers={"Authorization": f"Bearer {token}"})
    assert code == 4401
    assert took < 2.0
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"


async def _close_code(ws) -> int:
    """Read until the server closes; return its close code (0 if none within 5 s)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except TimeoutError:
        return 0


def test_signed_frames_good_accepted_tampered_stale_replayed_refused(svc):
    signer_service = TokenSigner(SECRET)
    token = signer_service.issue("viewer", "signer", signing=True)
    signer = FrameSigner(signer_service.frame_key(signer_service.verify(token)))

    async def scenario() -> list[dict]:
        replies = []
        async with websockets.connect(f"{svc.ws_url}/ws/market?token={token}") as ws:
            good = signer.sign({"action": "ping"})
            tampered = json.loads(signer.sign({"action": "ping"}))
            tampered["action"] = "unsubscribe"
            stale = signer.sign({"action": "ping"}, now_ms=int((time.time() - 30) * 1000))
            for frame in (good, json.dumps(tampered), stale, good):
                await ws.send(frame)
                replies.append(signer.open(await asyncio.wait_for(ws.recv(), 10)))
        return replies

    good, tampered, stale, replayed = asyncio.run(scenario())
    assert good["type"] == "pong"
    assert tampered["code"] == "signature_invalid"
    assert stale["code"] == "stale"
    assert replayed["code"] == "replay"


def test_broken_utf8_and_binary_frames_get_no_1011(svc):
    async def scenario() -> tuple[dict, int]:
        url = f"{svc.ws_url}/ws/market?token={svc.token('viewer', 'bytes')}"
        async with websockets.connect(url) as ws:
            await ws.send(b"\x00\xff")
            binary_reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        async with websockets.connect(url) as ws:
            await ws.send(b"{\"action\": \"\xff\"}", text=True)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            return binary_reply, info.value.rcvd.code

    binary_reply, code = asyncio.run(scenario())
    assert binary_reply["code"] == "binary_not_supported"
    assert code == 1007  # the server's own answer to invalid UTF-8, never 1011


def test_canary_secret_appears_in_no_response_and_no_log(svc):
    # Act: responses that could carry settings or errors
    admin = svc.auth("admin")
    bodies = [httpx.get(f"{svc.base_url}{path}", headers=admin, timeout=20).text
              for path in ("/admin/config", "/health", "/market/NOPE", "/options/AAPL?x=1&x=2",
                           "/no/such/path", "/openapi.json")]
    bodies.append(httpx.post(f"{svc.base_url}/admin/revocations", headers=admin,
                             json={"bad": CANARY}, timeout=20).text)
    config = httpx.get(f"{svc.base_url}/admin/config", headers=admin, timeout=20).json()

    # Assert
    assert all(CANARY not in body for body in bodies)
    assert config["settings"]["alpaca_secret_key"] == "********"
    leaks = [str(path) for path in svc.data_dir.rglob("*")
             if path.is_file() and not path.is_symlink() and _contains(path, CANARY)]
    assert leaks == []


def _contains(path: Path, needle: str) -> bool:
    try:
        with path.open("rb") as handle:
            return needle.encode() in handle.read()
    except OSError:
        return False


def test_retired_key_works_through_its_grace_period_then_401(svc):
    # Last: it rotates the service's keys.
    old = svc.token("viewer", "old-key")
    rotated = _cli(svc, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    time.sleep(1.5)  # replicas re-read the keyring at most once a second
    new_signer = TokenSigner(Keyring(SECRET, svc.data_dir / KEYRING_FILE))
    during = httpx.get(f"{svc.base_url}/market/AAPL", timeout=20,
                       headers={"Authorization": f"Bearer {old}"})
    time.sleep(4.5)
    after = httpx.get(f"{svc.base_url}/market/AAPL", timeout=20,
                      headers={"Authorization": f"Bearer {old}"})
    fresh = httpx.get(f"{svc.base_url}/market/AAPL", timeout=20,
                      headers={"Authorization": f"Bearer {new_signer.issue('viewer')}"})
    assert during.status_code == 200
    assert after.status_code == 401
    assert fresh.status_code == 200


def _cli(svc, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MARKETRAY_DATA_DIR": str(svc.data_dir),
           "MARKETRAY_SECRET_KEY": SECRET,
           "MARKETRAY_REDIS_URL": _redis_url_of(svc), "MARKETRAY_KEY_GRACE_S": "4"}
    return subprocess.run([sys.executable, "-m", "serve.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _redis_url_of(svc) -> str:
    config = httpx.get(f"{svc.base_url}/admin/config", headers=svc.auth("admin"),
                       timeout=20).json()
    return str(config["settings"]["redis_url"])
