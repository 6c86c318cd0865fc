"""The short path for plain quote/chain reads answers exactly as the full routes do."""

import pytest
from fastapi.testclient import TestClient

from serve.hot_reads import HotReads


@pytest.fixture
def setup(client_and_services):
    client, services = client_and_services
    assert isinstance(client.app, HotReads)
    return client, services, client.app


def _token(services, role="viewer"):
    return services.signer.issue(role, "tester")


@pytest.mark.parametrize("path", ["/options/AAPL", "/market/AAPL", "/options/msft"])
def test_plain_reads_take_the_short_path_with_the_routes_body_and_headers(setup, path):
    client, services, hot = setup
    token = _token(services)
    short = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert hot.served == 1
    full = client.get(f"{path}?token={token}")  # a query string always goes to the routes
    assert hot.served == 1
    assert short.status_code == full.status_code == 200
    assert short.content == full.content
    assert short.headers["content-type"] == full.headers["content-type"] == "application/json"
    assert short.headers["content-length"] == full.headers["content-length"]


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "missing_token"),
    ({"Authorization": "Bearer not-a-token"}, 401, "invalid_token"),
    ({"Authorization": "Basic abc"}, 401, "missing_token"),
])
def test_auth_failures_go_to_the_routes_and_keep_their_error_shape(setup, headers, status, code):
    client, _, hot = setup
    response = client.get("/options/AAPL", headers=headers)
    assert hot.served == 0
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_symbol_and_bad_path_fall_through_to_404_and_422(setup):
    client, services, hot = setup
    auth = {"Authorization": f"Bearer {_token(services)}"}
    unknown = client.get("/market/ZZZZ", headers=auth)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    too_long = client.get("/options/ABCDEFGHIJK", headers=auth)
    assert too_long.status_code == 422
    assert hot.served == 0


def test_filtered_chains_and_other_methods_use_the_routes(setup):
    client, services, hot = setup
    auth = {"Authorization": f"Bearer {_token(services)}"}
    assert client.get("/options/AAPL?type=call", headers=auth).status_code == 200
    assert client.post("/options/AAPL", headers=auth).status_code == 405
    assert client.get("/market/AAPL/bars?limit=5", headers=auth).status_code == 200
    assert hot.served == 0


def test_an_unexpected_failure_of_the_read_gets_the_routes_json_500(setup, monkeypatch):
    # Arrange: a chain read that fails with something no handler knows by name
    client, services, hot = setup
    auth = {"Authorization": f"Bearer {_token(services)}"}

    async def broken(symbol, flt):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.market, "chain_json", broken)
    # Act
    with TestClient(hot, raise_server_exceptions=False) as quiet:
        response = quiet.get("/options/AAPL", headers=auth)
    # Assert: the short path stepped aside and the one error handler answered
    assert hot.served == 0
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
