"""market.feeds.alpaca_fake: what the fake serves parses with alpaca-py's own clients and models.

alpaca-py is the independent side of the wire here: its REST clients page and validate the
responses, its ``StockDataStream`` performs the msgpack handshake and casts the streamed
messages into its models. Prices are checked against the fake's documented functions
(``bar_at``, ``first_bar_at``, ``price_at``) and against no-arbitrage order in the chain.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar
from alpaca.data.requests import OptionChainRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import ContractType
from alpaca.trading.requests import GetOptionContractsRequest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from market.feeds.alpaca_fake import (
    GARBAGE_FRAMES,
    NS_MIN,
    FakeAlpacaServer,
    bar_at,
    first_bar_at,
    price_at,
)

KEY, SECRET = "test-key", "test-secret"
SYMBOLS = [f"S{i:02d}" for i in range(17)]  # 17 x 600 minutes: past one 10,000-row page


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAlpacaServer]:
    fake = FakeAlpacaServer(key=KEY, secret=SECRET, strikes_per_side=6, expirations=3).start()
    yield fake
    fake.stop()


@pytest.fixture
def fast() -> Iterator[FakeAlpacaServer]:
    """A fresh server whose market clock runs ten minutes a second (its own stream slots)."""
    fake = FakeAlpacaServer(key=KEY, secret=SECRET, time_scale=600).start()
    yield fake
    fake.stop()


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def _same_bar(bar: Bar, expected: dict[str, float]) -> bool:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count, bar.vwap) == (
        expected["o"], expected["h"], expected["l"], expected["c"], expected["v"],
        expected["n"], expected["vw"])


def test_stock_bars_page_through_alpaca_py_and_equal_bar_at(server):
    client = StockHistoricalDataClient(KEY, SECRET, url_override=server.base_url)
    end = datetime.fromtimestamp(server.now_ns() // NS_MIN * 60, UTC)
    before = len(server.requests)

    barset = client.get_stock_bars(StockBarsRequest(
        symbol_or_symbols=SYMBOLS, timeframe=TimeFrame.Minute,
        start=end - timedelta(minutes=600), end=end))

    pages = server.requests[before:]
    assert len(pages) == 2  # the client followed next_page_token once
    assert "page_token" not in pages[0][2]
    assert pages[1][2]["page_token"] == "10000"
    for symbol in SYMBOLS:
        bars = barset[symbol]
        minutes = [_minute(b.timestamp) for b in bars]
        assert minutes == list(range(_minute(end) - 600, _minute(end)))
        assert all(_same_bar(b, bar_at(symbol, m)) for b, m in zip(bars, minutes, strict=True))
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
                   for b in bars)


def test_bars_of_a_corrupt_symbol_have_every_fifth_high_below_its_low(server):
    client = StockHistoricalDataClient(KEY, SECRET, url_override=server.base_url)
    end = datetime.fromtimestamp(server.now_ns() // NS_MIN * 60, UTC)
    server.corrupt_symbols.add("BAD")
    try:
        barset = client.get_stock_bars(StockBarsRequest(
            symbol_or_symbols=["BAD", "AAPL"], timeframe=TimeFrame.Minute,
            start=end - timedelta(minutes=20), end=end))
    finally:
        server.corrupt_symbols.clear()

    broken = [_minute(b.timestamp) for b in barset["BAD"] if b.high < b.low]
    assert broken == [m for m in range(_minute(end) - 20, _minute(end)) if m % 5 == 0]
    assert all(b.high >= b.low for b in barset["AAPL"])


def test_option_chain_and_contracts_parse_and_agree_with_the_listing(server):
    snapshots = OptionHistoricalDataClient(KEY, SECRET, url_override=server.base_url
                                           ).get_option_chain(OptionChainRequest(
                                               underlying_symbol="AAPL"))
    trading = TradingClient(KEY, SECRET, url_override=server.base_url)
    contracts, token, pages = [], None, 0
    while True:  # the trading client hands back the page token; the caller follows it
        page = trading.get_option_contracts(GetOptionContractsRequest(
            underlying_symbols=["AAPL"], page_token=token))
        contracts += page.option_contracts or []
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    listed = server.chain("AAPL")

    assert len(listed) == 3 * 13 * 2
    assert pages == 1 + len(listed) // 100
    assert [c.symbol for c in contracts] == [name for name, *_ in listed]
    assert set(snapshots) == {name for name, *_ in listed}
    for contract, (name, expiration, is_call, strike) in zip(contracts, listed, strict=True):
        assert contract.expiration_date == expiration
        assert contract.strike_price == strike == int(name[-8:]) / 1000
        assert contract.type == (ContractType.CALL if is_call else ContractType.PUT)
        assert int(contract.open_interest or 0) == server.open_interest(name)
    for name, snapshot in snapshots.items():
        quote = snapshot.latest_quote
        assert quote is not None
        assert 0 < quote.bid_price < quote.ask_price
        assert snapshot.greeks is not None
        is_call = name[-9] == "C"
        assert (0 < snapshot.greeks.delta < 1) if is_call else (-1 < snapshot.greeks.delta < 0)
    # no arbitrage within an expiration: calls cheapen and puts dearen as the strike rises
    for expiration in {e for _, e, _, _ in listed}:
        for is_call in (True, False):
            names = [n for n, e, c, _ in sorted(listed, key=lambda row: row[3])
                     if e == expiration and c == is_call]
            mids = [(snapshots[n].latest_quote.bid_price + snapshots[n].latest_quote.ask_price)
                    / 2 for n in names]
            ordered = sorted(mids, reverse=is_call)
            assert mids == ordered


def test_wrong_key_is_refused_403_and_an_invalid_symbol_400(server):
    end = datetime.fromtimestamp(server.now_ns() // NS_MIN * 60, UTC)
    request = StockBarsRequest(symbol_or_symbols=["AAPL", "NOPE"], timeframe=TimeFrame.Minute,
                               start=end - timedelta(minutes=5), end=end)
    before = len(server.requests)

    with pytest.raises(APIError) as wrong:
        StockHistoricalDataClient(KEY, "wrong", url_override=server.base_url
                                  ).get_stock_bars(request)
    server.invalid_symbols.add("NOPE")
    try:
        with pytest.raises(APIError) as invalid:
            StockHistoricalDataClient(KEY, SECRET, url_override=server.base_url
                                      ).get_stock_bars(request)
    finally:
        server.invalid_symbols.clear()

    assert wrong.value.status_code == 403
    assert invalid.value.status_code == 400
    assert "invalid symbol: NOPE" in str(invalid.value)
    assert len(server.requests) == before + 1  # a refused key is not logged as a request


def test_stream_sends_bars_then_their_updates_and_quotes_around_the_price(fast):
    got: dict[str, list] = {"bars": [], "updated": [], "trades": [], "quotes": []}
    stream = StockDataStream(KEY, SECRET, url_override=fast.stock_stream_url())

    def collect(kind: str):
        async def handler(message) -> None:
            got[kind].append(message)
        return handler

    stream.subscribe_bars(collect("bars"), "AAPL", "MSFT")
    stream.subscribe_updated_bars(collect("updated"), "AAPL")
    stream.subscribe_trades(collect("trades"), "AAPL")
    stream.subscribe_quotes(collect("quotes"), "AAPL")
    runner = threading.Thread(target=stream.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while len(got["updated"]) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.stop()
    runner.join(5)

    first = {(b.symbol, _minute(b.timestamp)): b for b in got["bars"]}
    assert {s for s, _ in first} == {"AAPL", "MSFT"}
    for (symbol, minute), bar in first.items():
        assert _same_bar(bar, first_bar_at(symbol, minute))
    for bar in got["updated"]:
        assert _same_bar(bar, bar_at("AAPL", _minute(bar.timestamp)))  # what REST serves
    # a minute that ended before the subscription landed has only its update
    paired = [(first[("AAPL", _minute(u.timestamp))], u) for u in got["updated"]
              if ("AAPL", _minute(u.timestamp)) in first]
    assert len(paired) >= 2
    assert all(u.volume - b.volume == 100 for b, u in paired)  # the late trades
    for quote in got["quotes"]:
        spot = price_at("AAPL", quote.timestamp.timestamp() / 60)
        assert quote.ask_price - quote.bid_price == pytest.approx(0.02, abs=2e-4)
        assert (quote.bid_price + quote.ask_price) / 2 == pytest.approx(spot, abs=1e-3)
    assert all(t.size == 100 for t in got["trades"])
    assert got["trades"]


async def _login(url: str, key: str = KEY) -> tuple[object, list[dict]]:
    ws = await connect(url)
    hello = msgpack.unpackb(await ws.recv())
    await ws.send(msgpack.packb({"action": "auth", "key": key, "secret": SECRET}))
    return ws, hello + msgpack.unpackb(await ws.recv())


async def test_a_second_login_gets_406_and_a_wrong_key_402(fast):
    first, replies = await _login(fast.stock_stream_url())
    second, refused = await _login(fast.stock_stream_url())
    options, other_stream = await _login(fast.option_stream_url())
    wrong, rejected = await _login(fast.option_stream_url(), key="nope")

    assert replies == [{"T": "success", "msg": "connected"},
                       {"T": "success", "msg": "authenticated"}]
    assert refused[1] == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
    assert other_stream[1]["msg"] == "authenticated"  # one connection per stream, not in all
    assert rejected[1]["code"] == 402
    for ws in (first, second, options, wrong):
        await ws.close()


async def test_garbage_frames_arrive_as_sent_then_a_drop_cuts_the_connection(fast):
    ws, _ = await _login(fast.stock_stream_url())
    await ws.send(msgpack.packb({"action": "subscribe", "trades": []}))
    assert msgpack.unpackb(await ws.recv())[0]["T"] == "subscription"

    fast.garbage()
    frames = [await asyncio.wait_for(ws.recv(), 5) for _ in GARBAGE_FRAMES]
    fast.drop()

    assert tuple(frames) == GARBAGE_FRAMES
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert fast.stats["drops"] == 1
    assert fast.stats["garbage"] == len(GARBAGE_FRAMES)


def test_completed_minutes_start_at_the_next_whole_minute_and_stop_before_now():
    fake = FakeAlpacaServer(time_scale=0)  # a stopped clock: no minute ends mid-test
    now_minute = fake.now_ns() // NS_MIN

    inside = fake.completed_minutes((now_minute - 10) * NS_MIN + 1, (now_minute - 2) * NS_MIN)
    to_now = fake.completed_minutes((now_minute - 3) * NS_MIN, None)
    future = fake.completed_minutes((now_minute - 1) * NS_MIN, (now_minute + 50) * NS_MIN)
    backwards = fake.completed_minutes((now_minute - 1) * NS_MIN, (now_minute - 5) * NS_MIN)

    assert inside == range(now_minute - 9, now_minute - 2)
    assert to_now == range(now_minute - 3, now_minute)
    assert future == range(now_minute - 1, now_minute)  # the forming minute is not complete
    assert len(backwards) == 0
    assert len(fake.completed_minutes(None, None)) == 390  # a session's worth by default
