"""Observability: metrics through Ray, JSON request logs and the audit log.

The request pipeline gets its hooks from :func:`build_hooks`; the hooks object implements
:class:`serve.hooks.PipelineHooks` and ``on_security_event(name, **fields)``.
``docs/operations.md`` lists the metrics, log files and audit entries.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors import telemetry
from serve.hooks import NoHooks, PipelineHooks
from serve.observability.audit import AuditWriter, FlushTimer, new_chain_id
from serve.observability.logs import RequestLog, default_log_dir, request_log_path
from serve.observability.pipeline import FLUSH_PERIOD_S, ObservabilityHooks

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["audit_dir", "audit_event", "build_hooks", "masked_settings", "settings_changes"]
LAST_SETTINGS_FILE = "last_settings.json"
_LOCK = threading.Lock()
_HOOKS: dict[str, ObservabilityHooks] = {}


def audit_dir(settings: Settings) -> Path:
    """Where the audit chains live: ``MARKETRAY_AUDIT_DIR`` or ``<data_dir>/audit``."""
    return (settings.audit_dir or settings.data_dir / "audit").resolve()


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready values with every secret replaced by ``***``."""
    values: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        secret = "secret" in name or name.endswith("_key_id") or name.endswith("_key")
        if value is not None and (secret or type(value).__name__ == "SecretStr"):
            values[name] = "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)  # a URL with credentials: keep the host
            values[name] = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        elif isinstance(value, Path):
            values[name] = str(value)
        elif isinstance(value, tuple):
            values[name] = list(value)
        else:
            values[name] = value
    return values


def settings_changes(path: Path, current: dict[str, Any]) -> dict[str, Any]:
    """Masked settings that differ from those recorded at the previous start (then record)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = None
    changes: dict[str, Any] = {}
    if isinstance(previous, dict):
        for key in sorted(set(previous) | set(current)):
            if previous.get(key) != current.get(key):
                changes[key] = {"from": previous.get(key), "to": current.get(key)}
    if previous != current:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(current, sort_keys=True, default=str))
            temporary.replace(path)
        except OSError:
            pass  # a read-only audit folder: the audit writer counts its own errors
    return changes


def build_hooks(settings: Settings, kind: str = "replica") -> PipelineHooks:
    """Return this process's hooks (one object per process and ``kind``).

    Starts the export thread, opens this process's audit chain and records
    ``service.start`` with the masked settings; ``service.stop`` is recorded at exit.
    """
    if not settings.observability:
        return NoHooks()
    with _LOCK:
        hooks = _HOOKS.get(kind)
        if hooks is not None:
            return hooks
        recorder = telemetry.recorder()
        audit = AuditWriter(audit_dir(settings), new_chain_id(kind),
                            max_bytes=settings.audit_max_mb << 20)
        request_log = None
        if settings.request_log:
            log_dir = default_log_dir(settings.data_dir.resolve() / "logs")
            request_log = RequestLog(request_log_path(log_dir))
        hooks = ObservabilityHooks(recorder, audit=audit, request_log=request_log,
                                   audit_reads=settings.audit_reads)
        telemetry.on_flush(hooks.export_gauges)
        timer = FlushTimer(hooks.flush, FLUSH_PERIOD_S, "marketray-audit")
        current = masked_settings(settings)
        hooks.on_security_event("service.start", component=kind, settings=current)
        changed = settings_changes(audit_dir(settings) / LAST_SETTINGS_FILE, current)
        if changed:
            hooks.on_security_event("settings.changed", component=kind, changes=changed)

        def _stop() -> None:
            hooks.on_security_event("service.stop", component=kind)
            timer.stop()
            audit.close()

        atexit.register(_stop)
        _HOOKS[kind] = hooks
        return hooks


def audit_event(settings: Settings, action: str, **fields: Any) -> None:
    """Record one event from a short-lived process (the CLI): its own closed chain."""
    writer = AuditWriter(audit_dir(settings), new_chain_id("cli"))
    writer.append(action, **fields)
    writer.close()
