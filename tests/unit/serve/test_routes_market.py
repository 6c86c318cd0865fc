import orjson
import pytest
from starlette.websockets import WebSocketDisconnect


def _auth(services, role="viewer"):
    return {"Authorization": f"Bearer {services.signer.issue(role, 'tester')}"}


def test_health_needs_no_token_and_reports_checks(client_and_services):
    client, _ = client_and_services
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["shards"]["status"] == "ok"


def test_market_without_token_is_401_with_error_shape_and_one_request_id(client_and_services):
    client, _ = client_and_services
    response = client.get("/market/AAPL", headers={"X-Request-ID": "abc"})
    assert response.status_code == 401
    rid = response.headers.get_list("x-request-id")
    assert len(rid) == 1
    assert rid[0] != "abc"  # the client is no trusted proxy: its id is not taken
    assert response.json() == {"error": {"code": "token_missing",
                                         "message": "missing bearer token",
                                         "request_id": rid[0]}}


def test_market_with_bad_token_is_401(client_and_services):
    client, _ = client_and_services
    response = client.get("/market/AAPL", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


def test_success_has_one_request_id_and_rate_limit_headers(client_and_services):
    client, services = client_and_services
    response = client.get("/market/AAPL", headers=_auth(services))
    assert response.status_code == 200
    assert len(response.headers.get_list("x-request-id")) == 1
    assert int(response.headers["ratelimit-limit"]) == services.settings.rate_budget_viewer
    assert int(response.headers["ratelimit-remaining"]) == services.settings.rate_budget_viewer - 1


def test_market_returns_snapshot(client_and_services):
    client, services = client_and_services
    response = client.get("/market/aapl", headers=_auth(services))
    assert response.status_code == 200
    assert response.json()["symbol"] == "AAPL"


def test_unknown_symbol_is_404(client_and_services):
    client, services = client_and_services
    response = client.get("/market/ZZZZ", headers=_auth(services))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_symbol_is_422(client_and_services):
    client, services = client_and_services
    response = client.get("/market/9$$", headers=_auth(services))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("query", ["limit=0", "limit=100000", "timeframe=7Min"])
def test_bars_query_out_of_range_is_422(client_and_services, query):
    client, services = client_and_services
    response = client.get(f"/market/AAPL/bars?{query}", headers=_auth(services))
    assert response.status_code == 422


def test_options_with_inverted_strikes_is_422(client_and_services):
    client, services = client_and_services
    response = client.get("/options/AAPL?min_strike=200&max_strike=100", headers=_auth(services))
    assert response.status_code == 422


def test_options_returns_chain_json(client_and_services):
    client, services = client_and_services
    response = client.get("/options/AAPL?type=call", headers=_auth(services))
    assert response.status_code == 200
    assert response.json()["model"]["name"] == "black_scholes_merton"


def test_websocket_without_token_closes_4401(client_and_services):
    client, _ = client_and_services
    with client.websocket_connect("/") as ws:
        ws.send_text(orjson.dumps({"action": "subscribe", "symbols": ["AAPL"]}).decode())
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 4401


def test_websocket_with_bad_query_token_closes_4401(client_and_services):
    client, _ = client_and_services
    with client.websocket_connect("/ws/market?token=bad") as ws, \
            pytest.raises(WebSocketDisconnect) as info:
        ws.receive_text()
    assert info.value.code == 4401


def test_websocket_subscribe_streams_market_frames(client_and_services):
    client, services = client_and_services
    token = services.signer.issue("viewer")
    with client.websocket_connect(f"/?token={token}") as ws:
        ws.send_text('{"action": "subscribe", "symbols": ["aapl"], "channels": ["market"]}')
        ack = orjson.loads(ws.receive_text())
        frame = orjson.loads(ws.receive_text())
    assert ack == {"type": "subscribed", "symbols": ["AAPL"], "channels": ["market"],
                   "all": ["AAPL"]}
    assert frame["type"] == "market"
    assert frame["data"]["symbol"] == "AAPL"
    assert frame["seq"] >= 1
    assert services.market.interest[-1] == ["AAPL"]


def test_websocket_auth_message_then_ping(client_and_services):
    client, services = client_and_services
    with client.websocket_connect("/ws/market") as ws:
        ws.send_text(orjson.dumps({"action": "auth",
                                   "token": services.signer.issue("viewer")}).decode())
        assert orjson.loads(ws.receive_text())["type"] == "authenticated"
        ws.send_text('{"action": "ping"}')
        assert orjson.loads(ws.receive_text())["type"] == "pong"


@pytest.mark.parametrize(("message", "code"), [
    ("not json", "invalid_json"),
    ('{"action": "dance"}', "invalid_message"),
    ('{"action": "subscribe", "symbols": "AAPL"}', "invalid_message"),
    ('{"action": "subscribe", "symbols": ["NOPE"]}', "unknown_symbol"),
])
def test_websocket_malformed_message_gets_error_frame_and_stays_open(
        client_and_services, message, code):
    client, services = client_and_services
    token = services.signer.issue("viewer")
    with client.websocket_connect(f"/?token={token}") as ws:
        ws.send_text(message)
        error = orjson.loads(ws.receive_text())
        ws.send_text('{"action": "ping"}')
        replies = [orjson.loads(ws.receive_text()) for _ in range(2 if code ==
                                                                  "unknown_symbol" else 1)]
    assert error["type"] == "error"
    assert error["code"] == code
    assert replies[-1]["type"] == "pong"


def test_websocket_unsubscribe_stops_frames(client_and_services):
    client, services = client_and_services
    token = services.signer.issue("viewer")
    with client.websocket_connect(f"/?token={token}") as ws:
        ws.send_text('{"action": "subscribe", "symbols": ["AAPL"]}')
        ws.receive_text()
        ws.send_text('{"action": "unsubscribe", "symbols": ["AAPL"]}')
        kinds = []
        while "unsubscribed" not in kinds and len(kinds) < 50:  # frames sent before it
            kinds.append(orjson.loads(ws.receive_text())["type"])
        assert "unsubscribed" in kinds
    assert not services.hub.audience["market"]
