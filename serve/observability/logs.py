"""JSON logs: application events with fields, the per-request log, Ray's JSON config.

Events are ``logger.info(message, extra={"event": name, **fields})``: under Ray's JSON
logging (:func:`ray_logging_config`, Serve's ``logging_config``) and under
:func:`configure_json_logging` (the CLI) every extra field becomes a JSON key.
The request log is written in batches by :class:`RequestLog`, one JSON object a line,
to its own file beside Ray's logs, never through the driver's log stream.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from serve.hooks import RequestRecord
from serve.observability.audit import utc_timestamp

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
# Extra keys that are never logged, whatever a caller passes.
_SECRET_KEYS = frozenset({"token", "secret", "secret_key", "password", "authorization",
                          "signing_key", "api_key"})


def event(logger: logging.Logger, name: str, message: str = "", /, *,
          level: int = logging.INFO, **fields: Any) -> None:
    """Log application event ``name`` (``feed.connected``, ...) with its fields."""
    if logger.isEnabledFor(level):
        safe = {k: ("***" if k in _SECRET_KEYS else v) for k, v in fields.items()}
        logger.log(level, message or name, extra={"event": name, **safe})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": utc_timestamp(record.created), "level": record.levelname,
            "logger": record.name, "message": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = "***" if key in _SECRET_KEYS else value
        if record.exc_info:
            payload["exc_text"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr as JSON lines (the CLI's own output)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def ray_logging_config() -> Any:
    """Ray's JSON logging for the driver and every task and actor of the job."""
    import ray

    return ray.LoggingConfig(encoding="JSON", log_level="INFO")


SERVE_LOGGING_CONFIG: Mapping[str, Any] = {"encoding": "JSON"}


def request_line(record: RequestRecord) -> dict[str, Any]:
    """The request log's object for one request or connection (no token, no secret)."""
    line: dict[str, Any] = {
        "time": utc_timestamp(record.started_at + record.latency_s), "level": "INFO",
        "event": "request", "request_id": record.request_id, "kind": record.kind,
        "method": record.method, "route": record.route, "status": record.status,
        "latency_ms": round(record.latency_s * 1e3, 3), "client": record.client,
        "subject": record.subject, "role": record.role}
    if record.resource is not None:
        line["resource"] = record.resource
    if record.reason is not None:
        line["reason"] = record.reason
    return line


def default_log_dir(fallback: Path) -> Path:
    """Ray's session log folder when this process is a Ray worker, else ``fallback``."""
    try:
        import ray

        if ray.is_initialized():
            node = ray._private.worker._global_node  # noqa: SLF001 - no public accessor
            if node is not None:
                return Path(node.get_logs_dir_path())
    except (ImportError, AttributeError):
        pass
    return fallback


class RequestLog:
    """Buffers request records and writes them as JSON lines in one write per flush."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[RequestRecord] = []
        self.written = 0
        self.errors = 0

    def append(self, record: RequestRecord) -> None:
        """Queue one record (cheap: the request path calls it)."""
        with self._lock:
            self._pending.append(record)

    def flush(self) -> int:
        """Format and write the queued records; return how many were written."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        with self._write_lock:
            data = b"".join(orjson.dumps(request_line(r), default=str) + b"\n"
                            for r in pending)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except OSError:
                self.errors += len(pending)
                return 0
            self.written += len(pending)
            return len(pending)


def request_log_path(log_dir: Path) -> Path:
    """This process's request log file: ``marketray-requests-<pid>.jsonl``."""
    return log_dir / f"marketray-requests-{os.getpid()}-{int(time.time())}.jsonl"
