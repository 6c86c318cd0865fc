"""Write audit chains with a fake clock for the audit tests."""

from __future__ import annotations

from pathlib import Path

from serve.observability.audit import AuditWriter

DAY = 86_400.0
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


class Clock:
    """A clock the test moves by setting ``now`` (Unix seconds)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def write_chain(directory: Path, n: int, *, chain: str = "replica-a", max_bytes: int = 1 << 20,
                clock: Clock | None = None, close: bool = True) -> AuditWriter:
    """Append ``n`` data.read entries a second apart; close the chain unless told not to."""
    clock = clock or Clock()
    writer = AuditWriter(directory, chain, max_bytes=max_bytes, clock=clock)
    for i in range(n):
        writer.append("data.read", subject=f"user{i % 3}", request_id=f"r{i}",
                      resource={"route": "/market/{symbol}", "target": "AAPL"},
                      outcome={"status": 200, "reason": None})
        clock.now += 1.0
    if close:
        writer.close()
    else:
        writer.flush()
    return writer


def lines_of(path: Path) -> list[str]:
    """Return the file's lines with their line ends."""
    return path.read_text().splitlines(keepends=True)
