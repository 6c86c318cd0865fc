"""End to end: a real Prometheus scrapes a running marketray through Ray's metrics export.

One service and one Prometheus for the module. Traffic with known counts (REST, a
WebSocket session, 401s, 429s) must show up in Prometheus's HTTP API; every dashboard
query must be valid PromQL; request log lines are JSON with the id the client got; the
audit chains verify, and copies with an entry edited, deleted or swapped do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.integration.harness import RunningService, free_port, start_service

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "marketray.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
VIEWER_BUDGET = 12  # rate-limit units per window for viewers: the 13th read is refused
REST_READS = 25

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is needed "
                       "(make prometheus installs it)"),
]


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    env = {"MARKETRAY_METRICS_EXPORT_PORT": str(free_port()),
           "MARKETRAY_SYMBOLS": "AAPL,MSFT", "MARKETRAY_TRUSTED_PROXIES": "127.0.0.1/32",
           "MARKETRAY_RATE_BUDGET_VIEWER": str(VIEWER_BUDGET),
           "MARKETRAY_RATE_WINDOW_S": "600",
           # Ray's agent exports what workers recorded every few seconds, not every 10.
           "RAY_metrics_report_interval_ms": "2000"}
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       ready_path="/health") as svc:
        yield svc


@pytest.fixture(scope="module")
def prometheus(service: RunningService) -> Iterator[str]:
    targets_file = service.data_dir / "metrics_targets.json"
    deadline = time.monotonic() + 60  # written just after the app answers
    while not targets_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    targets = json.loads(targets_file.read_text())[0]["targets"]
    assert targets, "marketray serve wrote no metrics target"
    work = Path(tempfile.mkdtemp(prefix="marketray-prom-"))
    shutil.copy(ALERTS, work / "alerts.yml")
    (work / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "marketray",
                            "file_sd_configs": [{"files": [str(targets_file)]}]}]}))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError((work / "prometheus.log").read_text()[-2_000:])
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", (expr, response)
    result: list[dict[str, Any]] = response["data"]["result"]
    return result


def scalar(url: str, expr: str) -> float:
    result = query(url, expr)
    return float(result[0]["value"][1]) if result else 0.0


def wait_for(url: str, expr: str, expected: float, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    value = scalar(url, expr)
    while value != expected and time.monotonic() < deadline:
        time.sleep(1)
        value = scalar(url, expr)
    return value


@pytest.fixture(scope="module")
def traffic(service: RunningService, prometheus: str) -> dict[str, Any]:
    """Drive known traffic once; return what the client saw."""
    seen: dict[str, Any] = {"ids": {}, "statuses": []}
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        for i in range(REST_READS):
            request_id = f"obs-{uuid.uuid4()}"
            response = client.get("/market/AAPL", headers={**service.auth("admin", "ops"),
                                                          "X-Request-ID": request_id})
            assert response.status_code == 200, response.text
            seen["ids"][request_id] = response.headers.get_list("x-request-id")
            if i == 0:
                generated = client.get("/market/MSFT", headers=service.auth())
                seen["generated"] = generated.headers.get_list("x-request-id")[0]
        seen["unauthorized"] = [client.get("/market/AAPL").status_code for _ in range(3)]
        viewer = service.auth("viewer", "ratelimited-viewer")
        statuses = [client.get("/options/AAPL", headers=viewer).status_code
                    for _ in range(VIEWER_BUDGET + 3)]
        seen["viewer"] = statuses

    async def sessions() -> None:
        token = service.token("viewer", "ws-viewer")
        async with websockets.connect(f"{service.ws_url}/ws/market?token={token}") as ws:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"],
                                      "channels": ["market"]}))
            frames = 0
            while frames < 3:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                frames += frame.get("type") == "market"
        with contextlib.suppress(websockets.ConnectionClosed):
            async with websockets.connect(f"{service.ws_url}/ws/market?token=bad") as ws:
                await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(sessions())
    return seen


def test_prometheus_counts_rest_reads(prometheus: str, traffic: dict[str, Any]) -> None:
    expr = ('sum(ray_marketray_requests_total{kind="http",route="/market/{symbol}",'
            'method="GET",status="200"})')

    assert wait_for(prometheus, expr, REST_READS + 1) == REST_READS + 1


def test_prometheus_counts_401s(prometheus: str, traffic: dict[str, Any]) -> None:
    assert traffic["unauthorized"] == [401, 401, 401]
    expr = 'sum(ray_marketray_requests_total{kind="http",status="401"})'

    assert wait_for(prometheus, expr, 3) == 3
    assert wait_for(prometheus, 'sum(ray_marketray_auth_failures_total{kind="http"})', 3) == 3


def test_prometheus_counts_429s(prometheus: str, traffic: dict[str, Any]) -> None:
    refused = traffic["viewer"].count(429)
    assert refused >= 3, traffic["viewer"]
    expr = 'sum(ray_marketray_rate_limited_total{route="/options/{symbol}"})'

    assert wait_for(prometheus, expr, refused) == refused
    assert wait_for(prometheus, 'sum(ray_marketray_requests_total{status="429"})',
                    refused) == refused


def test_prometheus_counts_websocket_sessions(prometheus: str,
                                              traffic: dict[str, Any]) -> None:
    closed = wait_for(prometheus, 'sum(ray_marketray_requests_total{kind="websocket"})', 2)
    refused = wait_for(prometheus, 'sum(ray_marketray_ws_closes_total{code="4401"})', 1)
    sent = wait_for(prometheus, 'sum(ray_marketray_ws_frames_sent_total) >= 3', 1, 30)

    assert (closed, refused) == (2, 1)
    assert sent >= 3
    assert wait_for(prometheus, 'sum(ray_marketray_ws_connections{stream="market"})', 0) == 0


def test_latency_histogram_buckets_scraped(prometheus: str, traffic: dict[str, Any]) -> None:
    expr = 'count(ray_marketray_request_duration_seconds_bucket{route="/market/{symbol}"})'

    assert wait_for(prometheus, expr, 12) == 12  # 11 bounds and +Inf


def test_every_dashboard_query_is_valid_promql(prometheus: str,
                                               traffic: dict[str, Any]) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"].replace("$__rate_interval", "1m")
             for p in panels for t in p.get("targets", [])]

    assert len(exprs) > 30
    for expr in exprs:
        query(prometheus, expr)  # asserts status success


def test_alert_rules_loaded_and_healthy(prometheus: str, traffic: dict[str, Any]) -> None:
    time.sleep(2)
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]

    assert len(rules) == 8
    assert {r["health"] for r in rules} == {"ok"}


def request_log_files() -> set[Path]:
    """Request-log files of every Ray session here, once each (session_latest is a link)."""
    return {p.resolve() for p in Path("/tmp/ray").glob("session_*/logs/marketray-requests-*.jsonl")}


def request_log_lines(service: RunningService) -> list[dict[str, Any]]:
    """Every request-log line this service's Ray session wrote (parsed; all must parse)."""
    lines = []
    for path in request_log_files():
        for line in path.read_text().splitlines():
            lines.append(json.loads(line))  # a line that is not JSON fails the test
    return lines


def test_request_log_json_with_client_request_ids(service: RunningService,
                                                  traffic: dict[str, Any]) -> None:
    # The trusted proxy's id is the one the client gets back (Serve's own copy may repeat it).
    assert all(set(got) == {sent} for sent, got in traffic["ids"].items())
    deadline = time.monotonic() + 10
    wanted = set(traffic["ids"]) | {traffic["generated"]}
    by_id: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not wanted <= set(by_id):
        by_id = {line["request_id"]: line for line in request_log_lines(service)}
        time.sleep(0.5)

    assert wanted <= set(by_id)
    line = by_id[next(iter(traffic["ids"]))]
    assert (line["route"], line["status"], line["subject"], line["role"]) == (
        "/market/{symbol}", 200, "ops", "admin")
    assert line["latency_ms"] > 0
    text = json.dumps(list(by_id.values()))
    assert "Bearer" not in text
    assert service.token("admin", "ops")[:40] not in text  # a JWT's constant header


def run_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serve.cli", "audit", "verify", "--dir",
                           str(directory)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_audit_verify_passes_then_names_tampered_entries(
        service: RunningService, traffic: dict[str, Any], tmp_path: Path) -> None:
    audit = service.data_dir / "audit"
    time.sleep(1.5)  # the writers flush every half second

    ok = run_verify(audit)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK ")

    chains = sorted((p for p in audit.iterdir() if p.is_dir()),
                    key=lambda p: sum(f.stat().st_size for f in p.glob("*.jsonl")))
    busiest = chains[-1]
    lines = (busiest / "000001.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) > 20

    def tampered(name: str, change: Any) -> str:
        copy = tmp_path / name
        shutil.copytree(audit, copy)
        path = copy / busiest.name / "000001.jsonl"
        edited = list(lines)
        change(edited)
        path.write_text("".join(edited))
        result = run_verify(copy)
        assert result.returncode == 1, result.stdout
        return result.stdout

    def edit(entries: list[str]) -> None:
        entries[10] = entries[10].replace('"status":200', '"status":201', 1)

    def delete(entries: list[str]) -> None:
        del entries[12]

    def swap(entries: list[str]) -> None:
        entries[14], entries[15] = entries[15], entries[14]

    assert f"{busiest.name}/000001.jsonl:11 (seq 11): edited" in tampered("edited", edit)
    assert "entry 13 deleted" in tampered("deleted", delete)
    assert f"{busiest.name}/000001.jsonl:15 (seq 16): reordered" in tampered("swapped", swap)


def test_admin_audit_endpoint_filters(service: RunningService,
                                      traffic: dict[str, Any]) -> None:
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        refused = client.get("/admin/audit", params={"action": "auth.refused"},
                             headers=service.auth()).json()
        by_subject = client.get("/admin/audit", params={"subject": "ops", "limit": 1000},
                                headers=service.auth()).json()
        limited = client.get("/admin/audit", params={"action": "rate.limited"},
                             headers=service.auth()).json()
        denied = client.get("/admin/audit", headers=service.auth("viewer"))

    assert refused["count"] >= 3
    assert {e["outcome"]["status"] for e in refused["entries"]} >= {401}
    reads = [e for e in by_subject["entries"] if e["action"] == "data.read"]
    assert {e["request_id"] for e in reads} >= set(traffic["ids"])
    assert {e["subject"] for e in by_subject["entries"]} == {"ops"}
    assert limited["count"] == traffic["viewer"].count(429)
    assert denied.status_code == 403


def test_health_reports_resources_and_queues_with_thresholds(service: RunningService) -> None:
    body = httpx.get(f"{service.base_url}/health", timeout=10).json()

    resources, queues = body["checks"]["resources"], body["checks"]["queues"]
    assert set(resources["processes"]) >= {"replica", "shard-0", "feed"}
    shard = resources["processes"]["shard-0"]
    assert shard["rss_mb"]["value"] > 50
    assert shard["rss_mb"]["degraded_above"] < shard["rss_mb"]["unhealthy_above"]
    assert resources["object_store"]["value"] is not None
    assert 0 <= queues["feed_backlog"]["value"] <= 1
    assert body["status"] != "unhealthy", body


def test_application_events_logged_as_json_with_fields(service: RunningService,
                                                       traffic: dict[str, Any]) -> None:
    request_logs = [p for p in request_log_files() if next(iter(traffic["ids"])) in p.read_text()]
    assert len(request_logs) == 1
    logs = request_logs[0].parent  # this service's Ray session
    events = []
    for path in logs.glob("worker-*.err"):
        for line in path.read_text(errors="replace").splitlines():
            if '"event": ' in line:
                events.append(json.loads(line))  # Ray's JSON logging: one object per line

    started = [e for e in events if e["event"] == "feed.started"]
    assert started, [e["event"] for e in events]
    assert (started[0]["feed"], started[0]["symbols"]) == ("sim", 2)
    assert started[0]["actor_name"] == "marketray-feed"  # Ray's own fields beside ours
