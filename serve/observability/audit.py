"""The audit log: append-only, hash-chained JSON Lines under ``<data_dir>/audit/``.

Every writer (a replica, an actor, a CLI run) owns one chain, a folder
``<audit dir>/<chain id>/`` of numbered files ``000001.jsonl``, ``000002.jsonl``, ...;
no two processes ever append to the same file, so replicas and nodes cannot interleave
half-lines. Each entry carries ``seq`` (1, 2, ... over the whole chain), ``prev`` (the
SHA-256 of its predecessor, 64 zeros for the first) and ``hash`` (SHA-256 of ``prev``
followed by the entry's canonical JSON without ``hash``). A file is closed and the next
one started when it would pass ``max_bytes`` or the UTC day changes; the chain runs on
across files. :func:`verify_dir` names the first edited, deleted or reordered entry.

Entries are buffered and written in batches (one ``write`` per flush): callers append
from the request path, a timer flushes. Nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64
FILE_SUFFIX = ".jsonl"
CLOSE_ACTION = "chain.closed"
# Fields that never reach the audit log, whatever a caller passes.
_SECRET_KEYS = frozenset({"token", "secret", "secret_key", "password", "authorization", "key",
                          "signing_key", "api_key"})


def canonical(entry: Mapping[str, Any]) -> bytes:
    """Return the bytes an entry's hash covers: sorted keys, no spaces, UTF-8.

    The same bytes as ``json.dumps(entry, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` for the JSON types entries hold, so a verifier in any language
    can rebuild them.
    """
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str)


def entry_hash(prev: str, body: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``prev`` and the canonical form of ``body`` (``hash`` excluded)."""
    digest = hashlib.sha256(prev.encode())
    digest.update(canonical(body))
    return digest.hexdigest()


_SECOND_CACHE: dict[int, str] = {}


def utc_timestamp(unix_s: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``."""
    micros = round(unix_s * 1e6)
    second, micro = divmod(micros, 1_000_000)
    prefix = _SECOND_CACHE.get(second)
    if prefix is None:  # strftime once per second, not once per entry
        if len(_SECOND_CACHE) > 64:
            _SECOND_CACHE.clear()
        prefix = _SECOND_CACHE[second] = datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{micro:06d}Z"


def new_chain_id(kind: str) -> str:
    """A chain id unique across hosts, processes and restarts: ``kind-host-pid-start``."""
    host = socket.gethostname().split(".")[0] or "host"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{kind}-{host}")
    return f"{safe}-{os.getpid()}-{time.time_ns() // 1000}"


def _scrub(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k.lower() in _SECRET_KEYS else v) for k, v in fields.items()}


class AuditWriter:
    """One hash chain, written in batches; thread-safe; never raises into callers."""

    def __init__(self, directory: Path, chain_id: str, *, max_bytes: int = 64 << 20,
                 max_buffer: int = 4_096, clock: Any = time.time) -> None:
        self.directory = Path(directory) / chain_id
        self.chain_id = chain_id
        self.max_bytes = max_bytes
        self.max_buffer = max_buffer
        self._clock = clock
        self._lock = threading.Lock()  # guards _pending; appends never wait for the disk
        self._write_lock = threading.Lock()  # one flush at a time, in order
        self._pending: list[dict[str, Any]] = []
        self._seq = 0
        self._prev = GENESIS
        self._file_no = 0
        self._file_day = ""
        self._file_bytes = 0
        self.written = 0
        self.errors = 0
        self.closed = False

    def append(self, action: str, **fields: Any) -> None:
        """Queue one entry (``time`` is now); written at the next :meth:`flush`.

        Fields named like secrets (``token``, ``password``, ...) are written as ``***``.
        """
        self.append_trusted({"action": action, **_scrub(fields)})

    def append_trusted(self, entry: dict[str, Any]) -> None:
        """Queue ``entry`` (``action`` plus fields the caller built without secrets)."""
        entry["time_unix"] = self._clock()
        with self._lock:
            if self.closed:
                return
            self._pending.append(entry)
            full = len(self._pending) >= self.max_buffer
        if full:
            self.flush()

    def flush(self) -> int:
        """Chain and write every queued entry; return how many were written."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return 0
            try:
                self._write(pending)
            except OSError:
                # A full or read-only disk must not take requests down; the count shows.
                self.errors += len(pending)
                return 0
            self.written += len(pending)
            return len(pending)

    def close(self) -> None:
        """Write a closing entry and everything queued; later appends are dropped."""
        self.append(CLOSE_ACTION, chain=self.chain_id)
        self.flush()
        with self._lock:
            self.closed = True

    def _write(self, pending: list[dict[str, Any]]) -> None:
        lines: list[bytes] = []
        for raw in pending:
            unix_s = raw.pop("time_unix")
            self._seq += 1
            body = {"seq": self._seq, "time": utc_timestamp(unix_s), **raw,
                    "prev": self._prev}
            text = canonical(body)
            digest = hashlib.sha256(self._prev.encode() + text).hexdigest()
            # The stored line is the hashed bytes plus the hash (one serialisation).
            line = b"%s,\"hash\":\"%s\"}\n" % (text[:-1], digest.encode())
            day = body["time"][:10]
            if self._file_no == 0 or day != self._file_day or (
                    self._file_bytes and self._file_bytes + len(line) > self.max_bytes):
                self._flush_lines(lines)
                lines = []
                self._file_no += 1
                self._file_day = day
                self._file_bytes = 0
            lines.append(line)
            self._file_bytes += len(line)
            self._prev = digest
        self._flush_lines(lines)

    def _flush_lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self._file_no:06d}{FILE_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"".join(lines))
        finally:
            os.close(fd)


class FlushTimer:
    """A daemon thread that calls ``flush`` every ``period_s`` until stopped."""

    def __init__(self, flush: Any, period_s: float, name: str) -> None:
        self._flush = flush
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self._flush()

    def stop(self) -> None:
        """Stop the thread after one last flush."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._flush()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first bad entry of one chain."""

    chain: str
    file: str
    line: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.chain}/{self.file}:{self.line}"
        seq = "" if self.seq is None else f" (seq {self.seq})"
        return f"{where}{seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify_chain` found: entries checked, whether it was closed, problem."""

    chain: str
    entries: int
    closed: bool
    problem: ChainProblem | None


def chain_dirs(audit_dir: Path) -> list[Path]:
    """Every chain folder under ``audit_dir``, sorted by name."""
    if not audit_dir.is_dir():
        return []
    return sorted(p for p in audit_dir.iterdir() if p.is_dir())


def _chain_lines(chain: Path) -> Iterator[tuple[str, int, bytes]]:
    for path in sorted(chain.glob(f"*{FILE_SUFFIX}")):
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                yield path.name, number, line


def _seq_later(lines: Iterator[tuple[str, int, bytes]], seq: int) -> bool:
    for _file, _line, raw in lines:
        try:
            if json.loads(raw).get("seq") == seq:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def verify_chain(chain: Path) -> ChainReport:
    """Check one chain: each entry's hash, its link to the predecessor, and ``seq``."""
    name = chain.name
    prev, expected_seq, count, closed = GENESIS, 1, 0, False
    prev_file = ""

    def bad(file: str, line: int, seq: int | None, problem: str) -> ChainReport:
        return ChainReport(name, count, False, ChainProblem(name, file, line, seq, problem))

    lines = _chain_lines(chain)
    for file, line_no, raw in lines:
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            seq = entry["seq"]
            stored_hash = entry.pop("hash")
            stored_prev = entry["prev"]
        except (ValueError, KeyError, TypeError):
            return bad(file, line_no, None, "not a valid audit entry (damaged or edited)")
        if not isinstance(seq, int):
            return bad(file, line_no, None, "seq is not an integer (edited)")
        if entry_hash(stored_prev, entry) != stored_hash:
            return bad(file, line_no, seq, "edited: the entry's content does not match its hash")
        if seq != expected_seq or stored_prev != prev:
            if seq > expected_seq and _seq_later(lines, expected_seq):
                return bad(file, line_no, seq, f"reordered: seq {seq} where seq "
                           f"{expected_seq} belongs (seq {expected_seq} comes later)")
            if seq > expected_seq:
                what = (f"entries {expected_seq}-{seq - 1} deleted" if seq - expected_seq > 1
                        else f"entry {expected_seq} deleted")
                return bad(file, line_no, seq, f"{what} (seq {seq} follows seq "
                           f"{expected_seq - 1}{' in ' + prev_file if prev_file else ''})")
            if seq < expected_seq:
                return bad(file, line_no, seq, f"reordered: seq {seq} after seq "
                           f"{expected_seq - 1}")
            return bad(file, line_no, seq, f"the predecessor hash does not match entry "
                       f"{seq - 1}: entry {seq - 1} was edited and re-hashed, or replaced")
        prev, expected_seq, count = stored_hash, seq + 1, count + 1
        prev_file = file
        closed = entry.get("action") == CLOSE_ACTION
    return ChainReport(name, count, closed, None)


def verify_dir(audit_dir: Path) -> list[ChainReport]:
    """Verify every chain under ``audit_dir`` (see :func:`verify_chain`)."""
    return [verify_chain(chain) for chain in chain_dirs(audit_dir)]


def read_entries(audit_dir: Path, *, since: float | None = None, until: float | None = None,
                 subject: str | None = None, action: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Entries of every chain matching the filters, newest first, at most ``limit``.

    ``since``/``until`` are Unix seconds (inclusive); ``action`` matches exactly or as a
    prefix ending in ``.`` (``auth.`` matches ``auth.refused``). Undecodable lines are
    skipped (``marketray audit verify`` reports them).
    """
    since_s = utc_timestamp(since) if since is not None else None
    until_s = utc_timestamp(until) if until is not None else None

    def matching() -> Iterator[dict[str, Any]]:
        for chain in chain_dirs(audit_dir):
            for _file, _line, raw in _chain_lines(chain):
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(entry, dict):
                    continue
                stamp = str(entry.get("time", ""))
                if (since_s is not None and stamp < since_s) or (
                        until_s is not None and stamp > until_s):
                    continue
                if subject is not None and entry.get("subject") != subject:
                    continue
                entry_action = str(entry.get("action", ""))
                if action is not None and entry_action != action and not (
                        action.endswith(".") and entry_action.startswith(action)):
                    continue
                entry["chain"] = chain.name
                yield entry

    # nlargest keeps only ``limit`` entries in memory however long the log is.
    return heapq.nlargest(max(limit, 0), matching(),
                          key=lambda e: (str(e.get("time", "")), e.get("seq", 0)))
