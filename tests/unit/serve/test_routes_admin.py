"""Admin routes over fake services: revocations that take effect, the masked configuration."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.settings import Settings
from serve.auth import DEFAULT_TTL_S

CANARY = "canary-c0ffee-9d1e3b5a7c2f4e6a8b0d"


def _admin(services: Any, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {services.signer.issue(role, 'ops')}"}


def test_revoking_a_subject_stops_its_tokens(client_and_services: Any) -> None:
    client, services = client_and_services
    victim = {"Authorization": f"Bearer {services.signer.issue('viewer', 'mallory')}"}
    assert client.get("/market/AAPL", headers=victim).status_code == 200

    created = client.post("/admin/revocations", json={"subject": "mallory"},
                          headers=_admin(services))

    assert created.status_code == 201
    assert (created.json()["kind"], created.json()["value"]) == ("subject", "mallory")
    assert client.get("/market/AAPL", headers=victim).status_code == 401


def test_revoking_a_jti_lasts_until_its_expiry_and_no_longer_than_a_token_lives(
        client_and_services: Any) -> None:
    client, services = client_and_services
    soon = time.time() + 60

    created = client.post("/admin/revocations", json={"jti": "abc-123", "expires_at": soon},
                          headers=_admin(services)).json()
    capped = client.post("/admin/revocations", json={"jti": "abc-124", "expires_at": 1e11},
                         headers=_admin(services)).json()

    assert (created["kind"], created["value"], created["until"]) == ("jti", "abc-123", soon)
    assert capped["until"] - capped["at"] == pytest.approx(DEFAULT_TTL_S)  # the longest lifetime


@pytest.mark.parametrize("body", [
    {}, {"jti": "a", "subject": "b"}, {"jti": "has space"}, {"subject": "line\nbreak"},
    {"jti": "a", "expires_at": False}, {"jti": "a", "extra": 1},
])
def test_a_revocation_must_name_exactly_one_well_formed_target(client_and_services: Any,
                                                               body: dict) -> None:
    client, services = client_and_services

    response = client.post("/admin/revocations", json=body, headers=_admin(services))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_only_admins_reach_the_admin_routes(client_and_services: Any) -> None:
    client, services = client_and_services

    as_analyst = client.get("/admin/config", headers=_admin(services, "analyst"))
    anonymous = client.get("/admin/config")

    assert as_analyst.status_code == 403
    assert anonymous.status_code == 401


def test_the_configuration_is_shown_with_every_secret_masked(client_and_services: Any) -> None:
    client, services = client_and_services
    services.settings = Settings(alpaca_secret_key=CANARY,
                                 redis_url=f"redis://:{CANARY}@10.0.0.9:6379/0")

    response = client.get("/admin/config", headers=_admin(services))

    assert response.status_code == 200
    assert CANARY not in response.text
    assert response.json()["settings"]["port"] == services.settings.port
