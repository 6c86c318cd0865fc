"""The request pipeline in front of the app (TestClient, fake services, no Ray)."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from starlette.websockets import WebSocketDisconnect

from tests.unit.serve.security.protected import auth_header, protected_client, read_until_closed


def test_request_over_budget_gets_429_with_headers_and_passes_after_retry_after():
    # Arrange: a viewer budget of 3 units; a quote costs 1
    client, services = protected_client(rate_budget_viewer=3)
    headers = auth_header(services)
    with client:
        # Act
        answers = [client.get("/market/AAPL", headers=headers) for _ in range(4)]
        refused = answers[-1]
        services.cache._now.now += int(refused.headers["retry-after"])
        retried = client.get("/market/AAPL", headers=headers)
    # Assert
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert refused.headers["retry-after"] == "20"  # one unit of 3 per 60 s
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    assert retried.status_code == 200
    assert services.hooks.ended[3].reason == "rate_limited"


def test_route_cost_is_charged_a_chain_more_than_a_quote():
    client, services = protected_client()
    headers = auth_header(services)
    with client:
        quote = client.get("/market/AAPL", headers=headers)
        chain = client.get("/options/AAPL", headers=headers)
    budget = services.settings.rate_budget_viewer
    assert int(quote.headers["ratelimit-remaining"]) == budget - 1
    assert int(chain.headers["ratelimit-remaining"]) == budget - 1 - 5


def test_address_budget_covers_unauthenticated_requests():
    client, _ = protected_client(rate_budget_per_ip=2)
    with client:
        codes = [client.get("/health").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_denied_network_gets_403_before_authentication_and_4403_on_websocket():
    client, services = protected_client(ip_deny=("203.0.113.0/24",))
    with client:
        response = client.get("/market/AAPL")  # no token: refused for the address first
        with client.websocket_connect("/ws/market") as ws, \
                pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "address_denied"
    assert info.value.code == 4403
    assert [r.reason for r in services.hooks.ended] == ["ip_denied", "ip_denied"]


def test_allow_list_refuses_other_networks():
    client, _ = protected_client(ip_allow=("10.0.0.0/8",))
    with client:
        assert client.get("/health").status_code == 403


def test_forwarded_for_counts_only_from_a_trusted_proxy():
    untrusted, _ = protected_client(peer=("203.0.113.5", 1), ip_deny=("198.51.100.0/24",))
    trusted, services = protected_client(peer=("10.0.0.2", 1), ip_deny=("198.51.100.0/24",),
                                trusted_proxies=("10.0.0.0/8",))
    spoof = {"X-Forwarded-For": "198.51.100.9", "X-Request-ID": "proxy-id-1"}
    with untrusted, trusted:
        ignored = untrusted.get("/health", headers=spoof)
        believed = trusted.get("/health", headers=spoof)
        own = trusted.get("/health", headers={"X-Request-ID": "proxy-id-2"})
    assert ignored.status_code == 200
    assert ignored.headers["x-request-id"] != "proxy-id-1"
    assert believed.status_code == 403
    assert own.headers["x-request-id"] == "proxy-id-2"
    assert services.hooks.ended[-1].client == "10.0.0.2"


def test_token_bound_to_networks_is_refused_elsewhere():
    client, services = protected_client()
    with client:
        inside = client.get("/market/AAPL",
                            headers=auth_header(services, allow_ip=["203.0.113.0/24"]))
        outside = client.get("/market/AAPL",
                             headers=auth_header(services, allow_ip=["10.0.0.0/8"]))
    assert inside.status_code == 200
    assert outside.status_code == 403


def test_role_comes_from_the_route():
    client, services = protected_client()
    with client:
        viewer = client.get("/admin/config", headers=auth_header(services, "viewer"))
        admin = client.get("/admin/config", headers=auth_header(services, "admin"))
    assert viewer.status_code == 403
    assert services.hooks.ended[0].reason == "role_forbidden"
    assert admin.status_code == 200
    assert admin.json()["settings"]["rate_budget_viewer"] == services.settings.rate_budget_viewer


def test_revoked_jti_gets_401_and_its_open_websocket_closes_4401_within_2s():
    client, services = protected_client()
    token = services.signer.issue("viewer", "erin")
    jti = services.signer.verify(token).jti
    admin = auth_header(services, "admin", "root")
    with client, client.websocket_connect(f"/ws/market?token={token}") as ws:
        ws.send_text('{"action": "ping"}')
        assert orjson.loads(ws.receive_text())["type"] == "pong"
        revoked = client.post("/admin/revocations", json={"jti": jti}, headers=admin)
        started = time.monotonic()
        _, code = read_until_closed(ws)
        closed_after = time.monotonic() - started
        after = client.get("/market/AAPL", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 201
    assert code == 4401
    assert closed_after < 2.0
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "token_revoked"
    assert ("token_revoked", {"by": "root", "kind": "jti", "value": jti}) in \
        services.hooks.events


def test_expired_token_closes_the_websocket_4401():
    client, services = protected_client()
    token = services.signer.issue("viewer", "fay", ttl_s=1)
    with client, client.websocket_connect(f"/ws/market?token={token}") as ws:
        _, code = read_until_closed(ws)
    assert code == 4401


def test_body_over_the_limit_is_413_before_the_handler():
    client, services = protected_client(max_body_kb=1)
    with client:
        response = client.post("/admin/revocations", content=b"{" + b" " * 2000 + b"}",
                               headers={**auth_header(services, "admin"),
                                        "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_fields_are_422():
    client, services = protected_client()
    with client:
        response = client.post("/admin/revocations", json={"jti": "abc", "evil": 1},
                               headers=auth_header(services, "admin"))
    assert response.status_code == 422


def test_hooks_see_each_request_once_with_the_route_template():
    client, services = protected_client()
    with client:
        client.get("/market/AAPL", headers=auth_header(services))
        client.get("/market/ZZZZ", headers=auth_header(services))
        client.get("/no/such/path")
        with client.websocket_connect(f"/?token={services.signer.issue('viewer')}") as ws:
            ws.send_text('{"action": "ping"}')
            ws.receive_text()
    hooks = services.hooks
    assert hooks.started == [("http", "/market/{symbol}"), ("http", "/market/{symbol}"),
                             ("http", "unmatched"), ("websocket", "/")]
    assert [(r.route, r.status, r.resource) for r in hooks.ended[:3]] == [
        ("/market/{symbol}", 200, "AAPL"), ("/market/{symbol}", 404, "ZZZZ"),
        ("unmatched", 404, None)]
    assert hooks.ended[3].kind == "websocket"
    assert hooks.ended[0].subject == "tester"
    assert len(hooks.ended) == 4


# -- WebSocket limits and signed frames ---------------------------------------------------


def test_no_authentication_within_the_timeout_closes_4401():
    client, _ = protected_client(ws_auth_timeout_s=0.2)
    with client, client.websocket_connect("/ws/market") as ws, \
            pytest.raises(WebSocketDisconnect) as info:
        ws.receive_text()
    assert info.value.code == 4401


def test_connections_per_subject_are_capped():
    client, services = protected_client(ws_max_connections_per_subject=1)
    token = services.signer.issue("viewer", "gus")
    with client, client.websocket_connect(f"/ws/market?token={token}") as first:
        first.send_text('{"action": "ping"}')
        first.receive_text()
        with client.websocket_connect(f"/ws/market?token={token}") as second, \
                pytest.raises(WebSocketDisconnect) as info:
            second.receive_text()
    assert info.value.code == 1008


def test_principal_record_fields_are_set():
    client, services = protected_client()
    token = services.signer.issue("analyst", "ivy")
    principal = services.signer.verify(token)
    with client:
        client.get("/market/AAPL", headers={"Authorization": f"Bearer {token}"})
    record = services.hooks.ended[0]
    assert (record.subject, record.role, record.jti) == ("ivy", "analyst", principal.jti)
    assert replace(record, latency_s=0).status == 200


def test_websocket_connect_is_charged_its_route_cost():
    client, services = protected_client(rate_budget_viewer=1)
    token = services.signer.issue("viewer", "jan")
    with client:
        with client.websocket_connect(f"/ws/market?token={token}") as ws:
            ws.send_text('{"action": "ping"}')
            ws.receive_text()
        with client.websocket_connect(f"/ws/market?token={token}") as ws:
            _, code = read_until_closed(ws)
    assert code == 1008
    assert services.hooks.ended[-1].reason == "rate_limited"


def test_failed_authentication_is_charged_to_the_address():
    client, _ = protected_client(rate_budget_per_ip=3)
    bad = {"Authorization": "Bearer not-a-token"}
    with client:
        answers = [client.get("/market/AAPL", headers=bad) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[0].headers["ratelimit-remaining"] == "2"
    assert answers[3].headers["retry-after"].isdigit()
