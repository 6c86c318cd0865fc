"""Data commands of ``marketray``: backup, restore, history upkeep, the fake Alpaca server.

``serve.cli`` calls :func:`register` with its sub-parsers; each command sets
``func`` to a function of the parsed arguments returning an exit code.

    marketray backup [--dest DIR]
    marketray restore ARCHIVE [--yes]
    marketray history compact
    marketray history retention [--days N] [--archive DIR]
    marketray fake-alpaca [--port 8790] [--time-scale 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import MarketrayError
from core.settings import Settings
from core.storage import Storage


def register(sub: Any) -> None:
    """Add the data subcommands to ``marketray``'s sub-parser action."""
    b = sub.add_parser("backup", help="archive the data dir (history, index, uploads, secret; "
                       "with an object-store data dir, what the bucket holds)")
    b.add_argument("--dest", type=Path, default=None, help="default <data_dir>/backups")
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser("restore", help="verify a backup and restore it into the data dir")
    r.add_argument("archive", type=Path)
    r.add_argument("--yes", action="store_true", help="replace a non-empty data dir")
    r.set_defaults(func=cmd_restore)

    h = sub.add_parser("history", help="maintain the Parquet bar history")
    hsub = h.add_subparsers(dest="history_command", required=True)
    c = hsub.add_parser("compact", help="merge small files per partition")
    c.set_defaults(func=cmd_compact)
    t = hsub.add_parser("retention", help="drop or archive partitions older than N days")
    t.add_argument("--days", type=int, default=None,
                   help="default MARKETRAY_HISTORY_RETENTION_DAYS")
    t.add_argument("--archive", default=None,
                   help="move there (a path or URI) instead of deleting")
    t.set_defaults(func=cmd_retention)

    f = sub.add_parser("fake-alpaca", help="run a local Alpaca-protocol server (demos, tests)")
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=8790)
    f.add_argument("--key", default="test-key")
    f.add_argument("--secret", default="test-secret")
    f.add_argument("--time-scale", type=float, default=1.0, help="market minutes per minute")
    f.set_defaults(func=cmd_fake_alpaca)


def _fail(exc: Exception) -> int:
    message = exc.message if isinstance(exc, MarketrayError) else str(exc)
    print(f"marketray: {message}", file=sys.stderr)
    return 1


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a verified archive of the data dir."""
    from market.backup import backup  # noqa: PLC0415 - commands import what they use

    settings = Settings()
    try:
        archive = backup(settings.storage() if settings.data_url else settings.data_dir,
                         args.dest or settings.data_dir / "backups")
    except (MarketrayError, OSError) as exc:
        return _fail(exc)
    print(archive)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup after checking every file."""
    from market.backup import restore, verify  # noqa: PLC0415

    settings = Settings()
    target: Path | Storage = settings.storage() if settings.data_url else settings.data_dir
    try:
        manifest = verify(args.archive)
        if isinstance(target, Path) and target.exists() and any(target.iterdir()) \
                and not args.yes:
            print(f"marketray: {target} is not empty; pass --yes to replace it (the current "
                  "contents are kept beside it)", file=sys.stderr)
            return 2
        previous = restore(args.archive, target)
    except (MarketrayError, OSError) as exc:
        return _fail(exc)
    files = manifest.get("files")
    print(json.dumps({"restored": str(target), "files": len(files) if isinstance(files, dict)
                      else 0, "previous": str(previous)}))
    return 0


def _store() -> Any:
    from market.history import HistoryStore  # noqa: PLC0415

    return HistoryStore(Settings().storage("history"))


def cmd_compact(args: argparse.Namespace) -> int:
    """Merge each partition's small files."""
    print(json.dumps({"files_merged": _store().compact()}))
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """Apply the retention policy to the history."""
    days = args.days or Settings().history_retention_days
    removed = _store().apply_retention(days, args.archive)
    print(json.dumps({"days": days, "archived" if args.archive else "deleted": removed}))
    return 0


def cmd_fake_alpaca(args: argparse.Namespace) -> int:
    """Serve the local Alpaca-protocol server until interrupted."""
    from market.feeds.alpaca_fake import FakeAlpacaServer  # noqa: PLC0415

    server = FakeAlpacaServer(key=args.key, secret=args.secret, host=args.host, port=args.port,
                              time_scale=args.time_scale)
    base = f"http://{args.host}:{args.port}"
    print("fake Alpaca server; point marketray at it with:\n"
          f"  MARKETRAY_FEED=alpaca MARKETRAY_ALPACA_KEY_ID={args.key} "
          f"MARKETRAY_ALPACA_SECRET_KEY={args.secret}\n"
          f"  MARKETRAY_ALPACA_DATA_URL={base} MARKETRAY_ALPACA_TRADING_URL={base}\n"
          f"  MARKETRAY_ALPACA_STOCK_STREAM_URL=ws://{args.host}:{args.port}/v2/iex\n"
          f"  MARKETRAY_ALPACA_OPTION_STREAM_URL=ws://{args.host}:{args.port}/v1beta1/indicative\n"
          f"faults: curl '{base}/_control?fault=drop|silence&seconds=30|garbage|refuse&count=2"
          "|reject_key&on=1'", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve())
    return 0
