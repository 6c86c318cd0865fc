"""`marketray serve` with a rejected Alpaca key: a clear error on /health, no retry storm.

Its own module so the service of ``test_alpaca_e2e`` is gone before this one starts.
"""

from __future__ import annotations

import time

import httpx
import pytest

from market.feeds.alpaca_fake import FakeAlpacaServer
from tests.integration.harness import start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fake():
    server = FakeAlpacaServer().start()
    yield server
    server.stop()


def test_rejected_key_shows_a_clear_error_on_health(fake):
    env = {
        "MARKETRAY_FEED": "alpaca", "MARKETRAY_SYMBOLS": "AAPL",
        "MARKETRAY_ALPACA_KEY_ID": fake.key, "MARKETRAY_ALPACA_SECRET_KEY": "wrong-secret",
        "MARKETRAY_ALPACA_DATA_URL": fake.base_url,
        "MARKETRAY_ALPACA_TRADING_URL": fake.base_url,
        "MARKETRAY_ALPACA_STOCK_STREAM_URL": fake.stock_stream_url(),
        "MARKETRAY_ALPACA_OPTION_STREAM_URL": fake.option_stream_url(),
    }
    with start_service(env, args=("--no-knowledge", "--no-assistant"),
                       ready_path="/health") as svc:
        deadline = time.monotonic() + 20
        feed: dict = {}
        while time.monotonic() < deadline:
            body = httpx.get(f"{svc.base_url}/health", timeout=20).json()
            feed = body["checks"]["feed"]
            if feed.get("error"):
                break
            time.sleep(0.5)
        refused = fake.stats["refused_402"]
        time.sleep(4)
        refused_later = fake.stats["refused_402"]

    assert body["status"] == "degraded"
    assert feed["status"] == "error"
    assert "authentication failed" in feed["error"]
    assert "MARKETRAY_ALPACA_KEY_ID" in feed["error"]
    # No retry storm: once the error shows, no further logins (the wait is 300 s).
    assert refused >= 1
    assert refused_later == refused, dict(fake.stats)
