"""`marketray serve` with MARKETRAY_FEED=alpaca against the local Alpaca-protocol server.

The real alpaca-py clients inside the feed actor talk to :class:`FakeAlpacaServer`
(running in this process); data must reach /market and /options, open interest
must come from the contracts endpoint, and a dropped connection must heal.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from market.feeds.alpaca_fake import NS_MIN, FakeAlpacaServer, bar_at, price_at
from tests.integration.harness import start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fake():
    server = FakeAlpacaServer(time_scale=60).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def svc(fake):
    env = {
        "MARKETRAY_FEED": "alpaca", "MARKETRAY_SYMBOLS": "AAPL,MSFT",
        "MARKETRAY_ALPACA_KEY_ID": fake.key, "MARKETRAY_ALPACA_SECRET_KEY": fake.secret,
        "MARKETRAY_ALPACA_DATA_URL": fake.base_url,
        "MARKETRAY_ALPACA_TRADING_URL": fake.base_url,
        "MARKETRAY_ALPACA_STOCK_STREAM_URL": fake.stock_stream_url(),
        "MARKETRAY_ALPACA_OPTION_STREAM_URL": fake.option_stream_url(),
        "MARKETRAY_ALPACA_OPTION_BUDGET": "40", "MARKETRAY_ALPACA_BACKOFF_INITIAL_S": "0.2",
        "MARKETRAY_ALPACA_BACKOFF_MAX_S": "2",
    }
    with start_service(env, args=("--no-knowledge", "--no-assistant")) as running:
        yield running


def get(svc, path):
    response = httpx.get(f"{svc.base_url}{path}", headers=svc.auth("viewer"), timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def _minute(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) * 1_000_000_000 // NS_MIN


def test_market_bars_and_options_come_from_alpaca(svc, fake):
    market = get(svc, "/market/AAPL")
    bars = get(svc, "/market/AAPL/bars?limit=100")["bars"]
    chain = get(svc, "/options/AAPL")
    health = httpx.get(f"{svc.base_url}/health", timeout=20).json()

    # The fake market runs 60x fast (a minute a second): the served price must be the fake's
    # price at some moment of the last 30 fake minutes (30 s of real time, lag under load).
    now_minute = fake.now_ns() / NS_MIN
    recent = [price_at("AAPL", now_minute - m / 4) for m in range(121)]
    assert min(abs(market["price"] / p - 1) for p in recent) < 0.005
    assert market["indicators"]["sma_20"] is not None
    assert len(bars) == 100
    matching = sum(b["close"] == bar_at("AAPL", _minute(b["timestamp"]))["c"] for b in bars[:-1])
    assert matching >= 0.9 * (len(bars) - 1)
    assert chain["contracts"]
    assert all(c["open_interest"] == fake.open_interest(c["contract"])
               for c in chain["contracts"])
    assert any(c["price"] is not None for c in chain["contracts"])
    feed = health["checks"]["feed"]
    assert feed["name"] == "alpaca"
    assert feed["status"] == "ok", feed
    assert feed["connected"] is True


def test_streamed_bars_are_replaced_by_their_updated_bars(svc, fake):
    # Arrange: minutes streamed live from now on (the warm-up's REST bars are final already)
    start = fake.now_ns() // NS_MIN + 1
    deadline = time.monotonic() + 30
    while fake.now_ns() // NS_MIN < start + 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Act
    bars = get(svc, "/market/AAPL/bars?limit=100")["bars"]
    # Assert: each bar was streamed short of its late trades' volume and then replaced by its
    # updated bar 30 market-seconds later; the newest closed bars may still wait for theirs
    live = [b for b in bars[:-3] if _minute(b["timestamp"]) >= start]
    assert len(live) >= 4, bars[-10:]
    final = [b["volume"] == bar_at("AAPL", _minute(b["timestamp"]))["v"] for b in live]
    assert sum(final) >= len(live) - 1, live


def test_dropped_connection_heals_and_bars_keep_coming(svc, fake):
    before = get(svc, "/market/AAPL/bars?limit=5")["bars"][-1]["timestamp"]

    fake.drop()
    deadline = time.monotonic() + 30
    feed: dict = {}
    while time.monotonic() < deadline:
        feed = httpx.get(f"{svc.base_url}/health", timeout=20).json()["checks"]["feed"]
        if feed["detail"]["streams"]["stock"]["connects"] >= 2 and feed["connected"]:
            break
        time.sleep(0.5)
    time.sleep(3)
    after = get(svc, "/market/AAPL/bars?limit=5")["bars"][-1]["timestamp"]

    assert feed["detail"]["streams"]["stock"]["connects"] >= 2, feed
    assert feed["connected"] is True
    assert _minute(after) > _minute(before)

