"""Ports handed out by the CLI stay below the kernel's ephemeral range."""

import socket
from pathlib import Path

from core.settings import Settings
from serve.cli import REPLICA_PORTS, SINGLE_PORTS, _ingress_environment, pick_port


def _ephemeral_low() -> int:
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 32_768


def test_picked_ports_are_free_and_below_the_ephemeral_range():
    for _ in range(20):
        port = pick_port()
        assert SINGLE_PORTS[0] <= port < min(SINGLE_PORTS[1], _ephemeral_low() + 1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free right after the pick


def test_haproxy_environment_uses_ranges_that_cannot_meet(tmp_path):
    env = _ingress_environment(Settings(data_dir=tmp_path))
    first, last = (int(env[f"RAY_SERVE_DIRECT_INGRESS_{k}_HTTP_PORT"]) for k in ("MIN", "MAX"))
    grpc_first, grpc_last = (int(env[f"RAY_SERVE_DIRECT_INGRESS_{k}_GRPC_PORT"])
                             for k in ("MIN", "MAX"))
    assert REPLICA_PORTS[0] <= first < last < REPLICA_PORTS[1]
    assert last < grpc_first < grpc_last < SINGLE_PORTS[0]
    for key in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT"):
        assert SINGLE_PORTS[0] <= int(env[key]) < SINGLE_PORTS[1]
    assert grpc_last < _ephemeral_low()


def test_haproxy_request_metrics_follow_the_ingress_metrics_setting(tmp_path):
    off = _ingress_environment(Settings(data_dir=tmp_path))
    on = _ingress_environment(Settings(data_dir=tmp_path, ingress_metrics=True))

    assert off["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    assert on["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"
