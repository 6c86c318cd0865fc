"""GET /admin/audit through the request pipeline over fake services (no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.settings import Settings
from serve.observability.audit import AuditWriter

T0 = 1_764_000_000.0


def fill(audit: Path) -> None:
    clock = iter(T0 + i for i in range(100))
    writer = AuditWriter(audit, "replica-x", clock=lambda: next(clock))
    for subject, action in [("alice", "data.read"), ("bob", "auth.refused"),
                            ("alice", "data.write"), ("bob", "auth.forbidden"),
                            ("carol", "data.read")]:
        writer.append(action, subject=subject)
    writer.flush()


def test_admin_reads_filtered_entries(client_and_services: Any, tmp_path: Path) -> None:
    client, services = client_and_services
    services.settings = Settings(data_dir=tmp_path)
    fill(tmp_path / "audit")
    admin = {"Authorization": f"Bearer {services.signer.issue('admin', 'ops')}"}

    by_subject = client.get("/admin/audit", params={"subject": "alice"}, headers=admin).json()
    by_prefix = client.get("/admin/audit", params={"action": "auth."}, headers=admin).json()
    window = client.get("/admin/audit", params={"since": T0 + 1, "until": T0 + 3},
                        headers=admin).json()

    assert [e["action"] for e in by_subject["entries"]] == ["data.write", "data.read"]
    assert [e["subject"] for e in by_prefix["entries"]] == ["bob", "bob"]
    assert window["count"] == 3
    assert {e["chain"] for e in window["entries"]} == {"replica-x"}


def test_non_admin_refused_and_unknown_filter_rejected(client_and_services: Any,
                                                       tmp_path: Path) -> None:
    client, services = client_and_services
    services.settings = Settings(data_dir=tmp_path)
    viewer = {"Authorization": f"Bearer {services.signer.issue('viewer', 'v')}"}
    admin = {"Authorization": f"Bearer {services.signer.issue('admin', 'ops')}"}

    assert client.get("/admin/audit", headers=viewer).status_code == 403
    assert client.get("/admin/audit").status_code == 401
    assert client.get("/admin/audit", params={"subjct": "x"}, headers=admin).status_code == 422
    assert client.get("/admin/audit", params={"since": -1}, headers=admin).status_code == 422
    assert client.get("/admin/audit", headers=admin).json() == {"entries": [], "count": 0}
