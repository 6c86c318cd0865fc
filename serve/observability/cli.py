"""``marketray audit ...`` and where ``marketray serve``'s metrics are scraped."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from serve.observability.audit import read_entries, verify_dir


def metrics_targets() -> list[str]:
    """``host:port`` of every alive Ray node's metrics export (needs ``ray.init``)."""
    import ray

    targets = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            targets.append(f"{node['NodeManagerAddress']}:{port}")
    return sorted(targets)


def write_targets_file(path: Path, targets: list[str]) -> None:
    """Write a Prometheus file-based discovery file (atomic replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps([{"targets": targets, "labels": {"job": "marketray"}}]))
    temporary.replace(path)


def announce_metrics(data_dir: Path) -> list[str]:
    """Print where Prometheus scrapes this cluster and write ``<data_dir>/metrics_targets.json``."""
    targets = metrics_targets()
    path = data_dir.resolve() / "metrics_targets.json"
    write_targets_file(path, targets)
    urls = ", ".join(f"http://{t}/metrics" for t in targets) or "no Ray node exports metrics"
    print(f"metrics (Prometheus): {urls}; file discovery: {path}", flush=True)
    return targets


def refresh_targets(data_dir: Path) -> list[str]:
    """Rewrite ``<data_dir>/metrics_targets.json`` with the nodes alive now."""
    targets = metrics_targets()
    write_targets_file(data_dir.resolve() / "metrics_targets.json", targets)
    return targets


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify every audit chain; exit 1 naming the first bad entry of each bad chain."""
    from serve.cli_settings import load_settings  # noqa: PLC0415
    from serve.observability import audit_dir  # noqa: PLC0415

    directory = Path(args.dir) if args.dir else audit_dir(load_settings())
    if not directory.is_dir():
        print(f"marketray audit verify: no audit folder at {directory}", file=sys.stderr)
        return 2
    reports = verify_dir(directory)
    bad = [r for r in reports if r.problem is not None]
    entries = sum(r.entries for r in reports)
    for report in bad:
        print(f"TAMPERED {report.problem}")
    if not bad:
        open_chains = sum(not r.closed for r in reports)
        print(f"OK {len(reports)} chains, {entries} entries verified in {directory}"
              + (f" ({open_chains} still open or ended without a close entry)"
                 if open_chains else ""))
    return 1 if bad else 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    """Print matching entries as JSON lines, newest first."""
    from serve.cli_settings import load_settings  # noqa: PLC0415
    from serve.observability import audit_dir  # noqa: PLC0415

    directory = Path(args.dir) if args.dir else audit_dir(load_settings())
    for entry in read_entries(directory, since=args.since, until=args.until,
                              subject=args.subject, action=args.action, limit=args.limit):
        print(json.dumps(entry, ensure_ascii=False))
    return 0


def register(sub: Any) -> None:
    """Add ``audit verify`` and ``audit list`` to ``marketray``'s sub-parser action."""
    a = sub.add_parser("audit", help="check or read the audit log")
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check every hash chain; exit 1 naming the first "
                        "edited, deleted or reordered entry")
    v.add_argument("--dir", default=None, help="default <data_dir>/audit")
    v.set_defaults(func=cmd_audit_verify)
    lst = asub.add_parser("list", help="print entries as JSON lines, newest first")
    lst.add_argument("--dir", default=None)
    lst.add_argument("--since", type=float, default=None, help="Unix seconds")
    lst.add_argument("--until", type=float, default=None, help="Unix seconds")
    lst.add_argument("--subject", default=None)
    lst.add_argument("--action", default=None, help="exact, or a prefix ending in '.'")
    lst.add_argument("--limit", type=int, default=100)
    lst.set_defaults(func=cmd_audit_list)
