"""The whole service over real HTTP and WebSocket (`marketray serve` in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
import talib
import websockets
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from core.models import BarsResponse, MarketData, OptionsChain
from tests.integration.harness import start_service

pytestmark = pytest.mark.integration
INDICATORS = ("sma_20", "ema_20", "rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper",
              "bb_middle", "bb_lower", "atr_14", "vwap")


@pytest.fixture(scope="module")
def svc():
    # Two shards although three symbols would get one: reads must find each symbol's shard.
    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT,SPY", "MARKETRAY_NUM_SHARDS": "2"},
                       args=("--no-knowledge", "--no-assistant")) as running:
        yield running


def get(svc, path, role="viewer", **kwargs):
    return httpx.get(f"{svc.base_url}{path}", headers=svc.auth(role), timeout=20, **kwargs)


def test_health_is_healthy_without_token(svc):
    response = httpx.get(f"{svc.base_url}/health", timeout=20)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy", body
    assert body["checks"]["shards"]["alive"] == body["checks"]["shards"]["total"] == 2


def test_market_snapshot_has_warm_indicators(svc):
    data = MarketData.model_validate(get(svc, "/market/AAPL").json())
    assert data.symbol == "AAPL"
    assert data.price > 0
    assert data.timestamp.tzinfo is not None
    assert all(data.indicators[name] is not None for name in INDICATORS), data.indicators
    assert data.indicators["bb_lower"] < data.indicators["bb_middle"] < data.indicators["bb_upper"]


def test_bars_are_oldest_first_with_talib_exact_sma(svc):
    body = BarsResponse.model_validate(get(svc, "/market/MSFT/bars?limit=120").json())
    assert len(body.bars) == 120
    times = [b.timestamp for b in body.bars]
    assert times == sorted(times)
    close = np.array([b.close for b in body.bars])
    sma = np.array([b.model_extra["sma_20"] for b in body.bars], dtype=float)
    np.testing.assert_allclose(sma[19:], talib.SMA(close, 20)[19:], rtol=1e-9)


def test_options_chain_iv_agrees_with_vollib(svc):
    response = get(svc, "/options/SPY")
    assert response.status_code == 200, response.text
    chain = OptionsChain.model_validate(response.json())
    assert chain.model.name == "black_scholes_merton"
    assert len(chain.contracts) > 50
    checked = 0
    for c in chain.contracts:
        if c.implied_volatility is None or c.time_to_expiry < 1 / 365:
            continue
        flag = "c" if c.type == "call" else "p"
        ref = vollib_iv(c.price, chain.underlying_price, c.strike, c.time_to_expiry,
                        chain.model.rate, chain.model.dividend_yield, flag)
        assert c.implied_volatility == pytest.approx(ref, abs=1e-6)
        assert c.greeks is not None
        checked += 1
    assert checked > 20


def test_options_filters_apply(svc):
    chain = get(svc, "/options/AAPL").json()
    expiration = chain["contracts"][0]["expiration"]
    spot = chain["underlying_price"]
    params = {"expiration": expiration, "type": "put", "min_strike": spot * 0.95,
              "max_strike": spot * 1.05}
    rows = get(svc, "/options/AAPL", params=params).json()["contracts"]
    assert rows
    assert all(r["type"] == "put" and r["expiration"] == expiration for r in rows)
    assert all(spot * 0.95 <= r["strike"] <= spot * 1.05 for r in rows)


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/market/NOPE", 404, "not_found"),
    ("/market/AAPL/bars?limit=-1", 422, "invalid_input"),
    ("/options/AAPL?type=straddle", 422, "invalid_input"),
])
def test_bad_requests_get_contract_errors(svc, path, status, code):
    response = get(svc, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["request_id"]


def test_missing_token_is_401(svc):
    response = httpx.get(f"{svc.base_url}/market/AAPL", timeout=20)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_missing"


@pytest.mark.parametrize("path", ["/market/AAPL", "/market/NOPE", "/health"])
def test_every_response_carries_one_request_id_and_rate_limit_headers(svc, path):
    response = get(svc, path)
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1, ids
    assert "," not in ids[0]
    assert response.headers["ratelimit-limit"].isdigit()
    if response.status_code >= 400:
        assert response.json()["error"]["request_id"] == ids[0]


async def _stream(svc, token, messages, count):
    async with websockets.connect(f"{svc.ws_url}/?token={token}") as ws:
        for message in messages:
            await ws.send(message)
        return [json.loads(await asyncio.wait_for(ws.recv(), 15)) for _ in range(count)]


def test_websocket_streams_market_frames_with_rising_seq(svc):
    frames = asyncio.run(_stream(svc, svc.token("viewer"), [
        json.dumps({"action": "subscribe", "symbols": ["AAPL"], "channels": ["market"]})], 8))
    assert frames[0]["type"] == "subscribed"
    market = [f for f in frames if f["type"] == "market"]
    assert len(market) >= 5
    seqs = [f["seq"] for f in market]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    MarketData.model_validate(market[-1]["data"])


def test_websocket_options_channel_sends_chain(svc):
    frames = asyncio.run(_stream(svc, svc.token("viewer"), [
        json.dumps({"action": "subscribe", "symbols": ["SPY"], "channels": ["options"]})], 2))
    assert frames[1]["type"] == "options"
    OptionsChain.model_validate(frames[1]["data"])


def test_websocket_malformed_frame_keeps_connection(svc):
    frames = asyncio.run(_stream(svc, svc.token("viewer"), [
        "{{{", json.dumps({"action": "ping"})], 2))
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == "invalid_json"
    assert frames[1]["type"] == "pong"


def test_websocket_bad_token_closes_4401(svc):
    async def scenario():
        async with websockets.connect(f"{svc.ws_url}/ws/market?token=bad") as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            return info.value.rcvd.code

    assert asyncio.run(scenario()) == 4401


def test_websocket_header_auth_is_accepted(svc):
    async def scenario():
        async with websockets.connect(f"{svc.ws_url}/ws/market",
                                      additional_headers=svc.auth("viewer")) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(scenario())["type"] == "pong"


def test_sigterm_stops_the_service_and_its_cluster_in_order(svc):
    # Last in this module: it stops the module's service.
    # Arrange: the service has finished starting (its signal handlers are in place)
    deadline = time.monotonic() + 30
    while "marketray is serving" not in svc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.2)

    # Act
    started = time.monotonic()
    svc.process.send_signal(signal.SIGTERM)
    code = svc.process.wait(timeout=60)
    stopped_s = time.monotonic() - started

    # Assert: the orderly path ran (Serve, the feed, Ray), well inside Serve's 30 s default
    # drain, and nothing of the cluster outlived the driver
    log = svc.log_tail(400)
    assert code == 0, log
    assert "marketray: shutting down" in log
    assert "failed to shut down" not in log, log
    assert stopped_s < 20, f"took {stopped_s:.1f}s"
    deadline = time.monotonic() + 15
    while _group_alive(svc.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(svc.process.pid), "processes of the service outlived it"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
