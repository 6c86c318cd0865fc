"""The FastAPI app: every route states its policy, the root leads to the docs, one signer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient

import serve.security.keyring as keyring_module
from core.settings import Settings
from serve.app import create_api, signer_for
from serve.security.keyring import Keyring
from serve.security.policy import POLICY_ATTRIBUTE, flat_routes


def test_every_route_states_its_role_and_cost() -> None:
    routes = [r for r in flat_routes(create_api().router.routes)
              if isinstance(r, APIRoute | APIWebSocketRoute)]

    unmarked = [r.path for r in routes if not hasattr(r.endpoint, POLICY_ATTRIBUTE)]

    assert len(routes) > 10
    assert not unmarked, f"mark these with @secured: {unmarked}"


def test_the_market_and_admin_routes_are_mounted() -> None:
    paths = {getattr(r, "path", "") for r in flat_routes(create_api().router.routes)}

    assert {"/market/{symbol}", "/admin/config", "/admin/revocations", "/"} <= paths


def test_the_root_leads_to_the_api_docs() -> None:
    response = TestClient(create_api()).get("/", follow_redirects=False)

    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/docs"


def test_replicas_sign_with_the_same_keys_and_see_a_rotation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(secret_key="q" * 40, data_dir=tmp_path)
    here = signer_for(settings)
    before = here.issue("viewer", "ann")

    Keyring("q" * 40, tmp_path / "keyring.json").rotate()
    there = signer_for(settings)  # a replica started after the rotation
    after = there.issue("viewer", "bob")
    started = time.monotonic()
    monkeypatch.setattr(keyring_module.time, "monotonic", lambda: started + 2.0)

    assert there.verify(before).subject == "ann"  # the old key verifies through its grace
    assert here.verify(after).subject == "bob"  # the first replica re-read the file
