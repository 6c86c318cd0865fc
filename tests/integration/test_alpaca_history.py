"""Alpaca backfill with the real alpaca-py clients against the local Alpaca-protocol server.

The server's bars are a pure function of (symbol, minute) (``alpaca_fake.bar_at``), so
the lake is checked bar for bar against what the server serves; requests are counted
and timed at the server (``FakeAlpacaServer.requests``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInput
from core.settings import Settings
from market.feeds.alpaca_fake import NS_MIN, FakeAlpacaServer, bar_at
from market.research.backfill_plan import NEW_YORK, DayLedger, weekdays
from market.research.data import load_bars
from pipelines.backfill_alpaca import run_alpaca

pytestmark = [pytest.mark.integration]
KEY, SECRET = "hist-key-5d1f", "hist-secret-9a7c"
FIRST, LAST = date(2025, 6, 2), date(2025, 6, 11)  # eight weekdays
SESSION_MINUTES = 390


@pytest.fixture
def server():
    fake = FakeAlpacaServer(key=KEY, secret=SECRET).start()
    yield fake
    fake.stop()


def _settings(server: FakeAlpacaServer) -> Settings:
    return Settings(alpaca_key_id=KEY, alpaca_secret_key=SECRET,
                    alpaca_data_url=server.base_url, alpaca_trading_url=server.base_url)


def _session_minutes(first: date, last: date) -> list[int]:
    minutes = []
    for day in weekdays(first, last):
        open_ = datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK)
        start = int(open_.timestamp()) // 60
        minutes += range(start, start + SESSION_MINUTES)
    return minutes


def _assert_lake_has_served_bars(lake: Path, symbols: list[str], first: date,
                                 last: date) -> None:
    minutes = _session_minutes(first, last)
    loaded = {item.symbol: item for item in load_bars(lake, symbols)}
    assert sorted(loaded) == sorted(symbols)
    for symbol in symbols:
        item = loaded[symbol]
        assert (item.timestamp_ns // NS_MIN).tolist() == minutes
        served = [bar_at(symbol, m) for m in minutes]
        for column, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"),
                            ("volume", "v")):
            np.testing.assert_array_equal(getattr(item.bars, column),
                                          [b[key] for b in served])


def test_backfill_lands_served_bars_and_rerun_sends_no_request(server, tmp_path):
    settings = _settings(server)
    first = run_alpaca(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST, settings=settings,
                       symbol_days=4, concurrency=2)
    sent = len(server.requests)
    again = run_alpaca(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST, settings=settings,
                       symbol_days=4, concurrency=2)
    wider = run_alpaca(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST + timedelta(days=1),
                       settings=settings, symbol_days=4, concurrency=2)

    _assert_lake_has_served_bars(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST,
                                 LAST + timedelta(days=1))
    assert first["bars_written"] == 3 * 8 * SESSION_MINUTES
    assert sent == first["http"]["requests"] == 6  # 3 symbols x 2 runs of 4 days, 1 page each
    assert again["http"]["requests"] == 0
    assert again["symbol_days"]["already_done"] == 3 * 8
    assert len(server.requests) == sent + 1  # the new day: one request for the 3 symbols
    assert wider["bars_written"] == 3 * SESSION_MINUTES
    assert {s for _, _, q in server.requests[sent:] for s in q["symbols"].split(",")} == {
        "AAPL", "MSFT", "SPY"}


def test_backfill_into_an_object_store_resumes_there(server, tmp_path):
    import pyarrow.fs as pafs

    from core.storage import Storage
    from market.research.lake import read_symbol_year

    bucket = Storage("bucket/lake", filesystem=pafs._MockFileSystem())
    first = run_alpaca(bucket, ["AAPL", "MSFT"], FIRST, LAST, settings=_settings(server))
    sent = len(server.requests)
    again = run_alpaca(bucket, ["AAPL", "MSFT"], FIRST, LAST, settings=_settings(server))
    run_alpaca(tmp_path, ["AAPL", "MSFT"], FIRST, LAST, settings=_settings(server))

    assert first["bars_written"] == 2 * 8 * SESSION_MINUTES
    assert again["http"]["requests"] == 0
    assert len(server.requests) > sent  # the local lake was fetched, not copied
    for symbol in ("AAPL", "MSFT"):
        stored = read_symbol_year(bucket, symbol, 2025)
        assert stored is not None
        assert stored.equals(read_symbol_year(tmp_path, symbol, 2025))
    _assert_lake_has_served_bars(tmp_path, ["AAPL", "MSFT"], FIRST, LAST)


def test_killed_backfill_resumes_with_only_the_missing_requests(server, tmp_path):
    env = {**os.environ, "MARKETRAY_ALPACA_KEY_ID": KEY, "MARKETRAY_ALPACA_SECRET_KEY": SECRET,
           "MARKETRAY_ALPACA_DATA_URL": server.base_url}
    command = [sys.executable, "-m", "pipelines.backfill", "--source", "alpaca", "--symbols",
               "AAPL,MSFT,SPY", "--start", FIRST.isoformat(), "--end", LAST.isoformat(),
               "--out", str(tmp_path), "--symbol-days", "1", "--concurrency", "1",
               "--rate-limit", "240"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 60
    while len(server.requests) < 14:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    before = len(server.requests)
    ledger = DayLedger(tmp_path, "alpaca", {"feed": "iex", "adjustment": "raw",
                                            "hours": "regular"})
    done_before = sum(len(ledger.done(s)) for s in ("AAPL", "MSFT", "SPY"))

    manifest = run_alpaca(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST,
                          settings=_settings(server), symbol_days=1)

    assert 0 < done_before < 3 * 8  # killed midway
    assert manifest["symbol_days"]["already_done"] == done_before
    assert len(server.requests) - before == 3 * 8 - done_before
    _assert_lake_has_served_bars(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST)


def test_429_waits_for_retry_after_then_the_reset_time(server, tmp_path):
    server.gate.throttle_next(2, retry_after_s=0.4)
    server.gate.throttle_next(1, retry_after_s=None)  # X-RateLimit-Reset only, as Alpaca

    manifest = run_alpaca(tmp_path, ["AAPL"], FIRST, FIRST, settings=_settings(server),
                          concurrency=1, backoff_s=0.05)  # a backoff would retry sooner

    times = [t for t, _, _ in server.requests]
    assert len(times) == 4
    assert 0.4 <= times[1] - times[0] < 0.9
    assert 0.4 <= times[2] - times[1] < 0.9
    assert 0.5 <= times[3] - times[2] < 2.5  # until the whole epoch second after now + 1 s
    assert manifest["http"]["throttled_429"] == 3
    _assert_lake_has_served_bars(tmp_path, ["AAPL"], FIRST, FIRST)


def test_pacer_keeps_every_window_within_the_servers_limit(server, tmp_path):
    server.gate.limit = (10, 1.0)  # the server refuses an eleventh request in any second
    started = time.monotonic()

    manifest = run_alpaca(tmp_path, ["AAPL", "MSFT"], FIRST, LAST, settings=_settings(server),
                          symbol_days=1, concurrency=4, rate_limit=10, window_s=1.0)

    elapsed = time.monotonic() - started
    times = np.array([t for t, _, _ in server.requests])
    in_window = np.searchsorted(times, times + 1.0 - 0.02) - np.arange(len(times))
    assert len(times) == 2 * 8
    assert server.gate.refused == 0
    assert manifest["http"]["throttled_429"] == 0
    assert in_window.max() <= 10
    assert elapsed >= (16 - 5) / 5 - 0.1  # burst of 5, then 5 a second
    _assert_lake_has_served_bars(tmp_path, ["AAPL", "MSFT"], FIRST, LAST)


def test_bad_symbols_and_bars_are_counted_and_the_rest_lands(server, tmp_path):
    server.invalid_symbols = {"BAD"}
    server.corrupt_symbols = {"MSFT"}

    manifest = run_alpaca(tmp_path, ["AAPL", "BAD", "MSFT"], FIRST, LAST,
                          settings=_settings(server), symbol_days=8)

    corrupt = sum(1 for m in _session_minutes(FIRST, LAST) if m % 5 == 0)
    assert manifest["units"]["failed"] == 1
    assert "invalid symbol: BAD" in manifest["errors"][0]
    assert manifest["symbol_days"]["failed"] == 8
    assert manifest["bars_dropped"] == {"bad_range": corrupt}
    assert manifest["bars_written"] == 2 * 8 * SESSION_MINUTES - corrupt
    _assert_lake_has_served_bars(tmp_path, ["AAPL"], FIRST, LAST)
    assert DayLedger(tmp_path, "alpaca", {"feed": "iex", "adjustment": "raw",
                                          "hours": "regular"}).done("BAD") == set()


def test_refused_key_stops_the_run_and_is_never_written(server, tmp_path):
    server.reject_key = True

    with pytest.raises(InvalidInput, match="refused the credentials"):
        run_alpaca(tmp_path, ["AAPL", "MSFT", "SPY"], FIRST, LAST, settings=_settings(server),
                   symbol_days=1, concurrency=2)

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["units"]["failed"] == 3 * 8
    assert server.stats["GET /v2/stocks/bars"] <= 2  # the threads in flight, no more
    text = (tmp_path / "manifest.json").read_text()
    assert KEY not in text
    assert SECRET not in text


def test_iv_surface_from_alpaca_option_bars_prices_what_was_served(server, tmp_path):
    from vollib.black_scholes_merton import black_scholes_merton as vollib_price

    from market.feeds.alpaca_fake_history import option_bar, traded
    from pipelines.iv_surface import run_alpaca as surface

    settings = _settings(server)
    days = (FIRST, FIRST + timedelta(days=1))
    contracts, expiries, manifest = surface(tmp_path, ["AAPL"], *days, settings=settings,
                                            chain_days=14, use_ray=False)
    sent = len(server.requests)
    again, _, _ = surface(tmp_path, ["AAPL"], *days, settings=settings, chain_days=14,
                          use_ray=False)

    listed = server.chain("AAPL", listed=FIRST, last=days[1] + timedelta(days=14))
    expected = {(c, m) for day in days for c, expiration, _, _ in listed
                if day <= expiration <= day + timedelta(days=14)
                for m in _session_minutes(day, day) if traded(c, m)}
    got = contracts.select("contract", pl.col("minute_ns") // NS_MIN)
    assert set(got.iter_rows()) == expected
    assert contracts.height == len(expected)
    for row in contracts.sample(200, seed=1).iter_rows(named=True):
        minute = row["minute_ns"] // NS_MIN
        assert row["mid"] == option_bar(server.option_price, row["contract"], minute)["c"]
        assert row["spot"] == bar_at("AAPL", minute)["c"]
        price = vollib_price("c" if row["is_call"] else "p", row["spot"], row["strike"],
                             row["time_to_expiry"], 0.04, row["implied_volatility"], 0.0)
        assert price == pytest.approx(row["mid"], rel=1e-6)
    assert sorted(set(expiries["expiration"])) == [date(2025, 6, 6), date(2025, 6, 13)]
    assert manifest["config"]["source"]["fetch"]["sessions_fetched"] == 2
    assert len(server.requests) == sent  # the rerun read the kept days
    assert again.equals(contracts)
