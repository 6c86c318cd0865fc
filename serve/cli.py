"""The ``marketray`` command line: serve, ingest, and the commands of ``COMMAND_MODULES``."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings
from serve.cli_settings import load_settings as _settings
from serve.observability import cli as observability_commands
from serve.observability.logs import configure_json_logging, ray_logging_config

log = logging.getLogger("marketray")


# Ports this process hands out: below the kernel's ephemeral range (32768 and up on Linux),
# where an outgoing connection of the starting cluster could take a port between the check
# here and the bind of its user, and above Ray's worker ports (10002-19999). Replica
# HTTP ports get 20000-22999 (their gRPC twins 3000 higher), single ports 26000-31999.
REPLICA_PORTS = (20_000, 23_000)
GRPC_OFFSET = 3_000
SINGLE_PORTS = (26_000, 32_000)
TARGETS_REFRESH_S = 30.0  # how often serve rewrites the metrics discovery file
DRAIN_S = 2.0  # seconds a stopping ingress replica stays reachable (see _ingress_environment)


def pick_port(low: int = SINGLE_PORTS[0], high: int = SINGLE_PORTS[1]) -> int:
    """A TCP port in [low, high) that is free on 127.0.0.1 now (random, checked by bind)."""
    for _ in range(200):
        port = low + secrets.randbelow(high - low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {low}-{high}")


def _ingress_environment(settings: Settings) -> dict[str, str]:
    """Environment Ray Serve reads at start for the chosen ingress.

    HAProxy mode forwards straight to each ingress replica's own HTTP server.
    Its config, socket and state files get a directory of their own per data dir
    (two services on one machine must not share them), kept short because
    HAProxy refuses socket paths over 97 characters and Ray adds a node id.

    A stopping replica first stays reachable for a draining period so load balancers
    can deregister it; Serve's default of 30 s made every shutdown of ``marketray serve``
    wait that long. HAProxy here is Serve's own, reloaded by the controller as replicas come
    and go, and it retries a refused connection on another replica, so the period is
    ``DRAIN_S`` unless the environment sets ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``
    (a cluster behind an outside load balancer may want it longer). In-flight requests
    are still waited for afterwards, up to the deployment's graceful shutdown timeout.
    """
    if settings.serve_ingress != "haproxy":
        return {}
    digest = hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
    base = Path(tempfile.gettempdir()) / f"mr-haproxy-{digest}"
    # Replica HTTP ports: Serve allocates them from a fixed range (30000-31000) per cluster;
    # a range of its own keeps two services on one host from meeting there.
    blocks = (REPLICA_PORTS[1] - REPLICA_PORTS[0]) // 100
    first_port = REPLICA_PORTS[0] + secrets.randbelow(blocks) * 100
    base.mkdir(parents=True, exist_ok=True)
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "1" if settings.ingress_metrics else "0",
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(pick_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(pick_port()),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first_port + 99),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(first_port + GRPC_OFFSET),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(first_port + GRPC_OFFSET + 99),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": os.environ.get(
                "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(DRAIN_S))}


def _init_ray(address: str | None) -> None:
    import ray  # noqa: PLC0415 - keep `marketray token` fast

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, namespace="marketray", log_to_driver=False,
                 logging_config=ray_logging_config())
    else:
        # "local": a cluster of this process's own; without it ray.init joins whatever
        # cluster `ray start` left on this machine (another service's, or a test's)
        ray.init(address="local", namespace="marketray", include_dashboard=False,
                 log_to_driver=False,
                 logging_config=ray_logging_config(),
                 _metrics_export_port=_settings({}).metrics_export_port or None)


def _stop_on_signals(stop: threading.Event | None = None) -> threading.Event:
    """Make SIGTERM and SIGINT set ``stop`` (a new event if none) instead of ending us."""
    event = stop or threading.Event()

    def handler(*_: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event


def cmd_serve(args: argparse.Namespace) -> int:
    """Start (or join) Ray, start the market actors, deploy the app and block."""
    import ray  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from actors.market import start_market  # noqa: PLC0415
    from serve.app import AppArgs, build_app, signer_for  # noqa: PLC0415

    settings = _settings({"port": args.port, "host": args.host, "feed": args.feed,
                          "symbols": args.symbols, "num_shards": args.shards})
    _, generated = settings.resolved_secret()
    os.environ.update(_ingress_environment(settings))  # a local cluster inherits these
    # Ray starts its workers at nice 15, fit for batch work beside a busy raylet; here they
    # are the serving path (shards, feed, ingress), so a cluster started here runs them at
    # normal priority, like any server process (an existing cluster keeps its own setting).
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ctrl-C or SIGTERM while starting: finish starting, then shut down in order below
    # (a KeyboardInterrupt inside Ray's start-up was swallowed and the service kept running).
    stop = _stop_on_signals()
    _init_ray(args.address)
    # Keep the handles: non-detached actors are reclaimed once the driver drops them.
    market = start_market(settings)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app_args = AppArgs(settings=settings.model_dump(mode="json"),
                       with_knowledge=not args.no_knowledge,
                       with_assistant=not args.no_assistant)
    serve.run(build_app(app_args), name="marketray", route_prefix="/", blocking=False)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    url = f"http://{host}:{settings.port}"
    print(f"marketray is serving at {url}  (docs: {url}/docs, stream: ws://{host}:"
          f"{settings.port}/)", flush=True)
    observability_commands.announce_metrics(settings.data_dir)
    if generated:
        token = signer_for(settings).issue("admin", "admin")
        print(f"generated a secret in {settings.data_dir / 'secret.key'}; admin token:\n"
              f"{token}\ntry: curl -H 'Authorization: Bearer {token}' {url}/market/"
              f"{settings.symbols[0]}", flush=True)
    _stop_on_signals(stop)  # ray.init put Ray's crash reporter on SIGTERM: take it back
    refresh_at = time.monotonic() + TARGETS_REFRESH_S
    while not stop.is_set():
        time.sleep(0.5)
        if time.monotonic() > refresh_at:  # nodes that joined since start get scraped too
            refresh_at = time.monotonic() + TARGETS_REFRESH_S
            with contextlib.suppress(Exception):
                observability_commands.refresh_targets(settings.data_dir)
    print("marketray: shutting down", flush=True)
    serve.shutdown()
    ray.get(market.feed.stop.remote(), timeout=10)
    ray.shutdown()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run the PDF pipeline and publish a new index version."""
    ingest = importlib.import_module("pipelines.ingest")
    settings = _settings({})
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"marketray ingest: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    summary = ingest.ingest([Path(p) for p in args.paths], settings, address=args.address)
    print(summary if isinstance(summary, str) else _format_summary(summary))
    return 0


def _format_summary(summary: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(summary, indent=2, default=str)


# Modules that add subcommands: each has ``register(subparsers)``.
COMMAND_MODULES = ("serve.cli_security", "serve.cli_data", "serve.cli_research")


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``marketray``."""
    p = argparse.ArgumentParser(prog="marketray", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the service and block")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--host", default=None)
    s.add_argument("--feed", choices=["sim", "alpaca", "replay"], default=None)
    s.add_argument("--symbols", default=None, help="comma-separated tickers")
    s.add_argument("--shards", type=int, default=None, help="number of shard actors")
    s.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster address to join (default: start a local one)")
    s.add_argument("--no-knowledge", action="store_true", help="skip the document search")
    s.add_argument("--no-assistant", action="store_true", help="skip the model deployments")
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("ingest", help="ingest PDFs into the knowledge base (Ray Data)")
    i.add_argument("paths", nargs="+")
    i.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    i.set_defaults(func=cmd_ingest)

    for module_name in COMMAND_MODULES:  # each adds its subcommands with register(sub)
        try:
            commands = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
        else:
            commands.register(sub)
    observability_commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marketray`` script."""
    configure_json_logging()
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
