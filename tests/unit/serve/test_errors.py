"""Every failure becomes the contract's JSON error body, with the request's id and no trace."""

from __future__ import annotations

import orjson
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel

from core.errors import NotFound, RateLimited
from serve.errors import (
    error_body,
    install_error_handlers,
    retry_after_header,
)


class Order(BaseModel):
    symbol: str
    quantity: int


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("no such symbol: ZZZZ")

    @app.get("/busy")
    async def busy() -> None:
        raise RateLimited("slow down", retry_after=1.2)

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=409, detail="already running")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("/srv/secret/path.py line 12")

    @app.post("/orders")
    async def orders(order: Order) -> Order:
        return order

    return TestClient(app, raise_server_exceptions=False)


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    return body["error"]


def test_domain_error_keeps_its_code_status_and_message() -> None:
    response = _client().get("/missing")

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"
    assert _error(response)["message"] == "no such symbol: ZZZZ"


def test_rate_limited_says_when_to_retry_in_whole_seconds_never_early() -> None:
    response = _client().get("/busy")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"),
                                                  (1.01, "2"), (59.5, "60")])
def test_retry_after_rounds_up_and_is_at_least_one(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_http_errors_get_the_contract_code_for_their_status() -> None:
    client = _client()

    conflict = client.get("/teapot")
    unknown = client.get("/nowhere")

    assert (conflict.status_code, _error(conflict)["code"]) == (409, "conflict")
    assert (unknown.status_code, _error(unknown)["code"]) == (404, "not_found")


def test_validation_errors_are_422_naming_the_field() -> None:
    response = _client().post("/orders", json={"symbol": "AAPL", "quantity": "many"})

    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_input"
    assert _error(response)["message"].startswith("quantity: ")


def test_an_unexpected_error_reveals_nothing_of_the_server() -> None:
    response = _client().get("/boom")

    assert response.status_code == 500
    assert _error(response)["code"] == "internal_error"
    assert "secret" not in response.text


def test_each_request_gets_its_own_id() -> None:
    client = _client()

    ids = {_error(client.get("/missing"))["request_id"] for _ in range(3)}

    assert len(ids) == 3


def test_error_body_bytes_match_the_response_shape() -> None:
    body = orjson.loads(error_body("not_found", "gone", "r1"))
    assert body == {"error": {"code": "not_found", "message": "gone", "request_id": "r1"}}
