"""market.feeds.alpaca_convert: Alpaca messages to columns, malformed frames counted and
dropped, chains merged from contracts and snapshots (no network)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgpack
import numpy as np
import pytest
from alpaca.data.models import Bar, Quote, Trade
from alpaca.data.models.snapshots import OptionsSnapshot
from alpaca.trading.models import OptionContract

from market.feeds.alpaca_convert import MessageBuffer, bars_from_barset, build_chain
from market.feeds.alpaca_fake import GARBAGE_FRAMES
from market.feeds.base import QUOTE, TRADE

NS = 1_795_000_000_123_456_789
STAMP = msgpack.Timestamp.from_unix_nano(NS)


@pytest.fixture
def buffer():
    buf = MessageBuffer()
    buf.set_universe(["AAPL", "MSFT"])
    return buf


def test_raw_trades_quotes_and_bars_become_sorted_columns(buffer):
    later = msgpack.Timestamp.from_unix_nano(NS + 5)
    assert buffer.add({"T": "t", "S": "MSFT", "p": 410.5, "s": 100, "t": later})
    assert buffer.add({"T": "q", "S": "AAPL", "bp": 1.0, "ap": 1.1, "bs": 3, "as": 4, "t": STAMP})
    assert buffer.add({"T": "b", "S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10,
                       "t": msgpack.Timestamp.from_unix_nano(NS - NS % 60_000_000_000)})

    ticks, options, bars = buffer.drain()

    assert ticks.kind.tolist() == [QUOTE, TRADE]
    assert ticks.symbol_id.tolist() == [0, 1]
    assert ticks.ts_ns.tolist() == [NS, NS + 5]
    assert ticks.bid[0] == 1.0
    assert ticks.ask_size[0] == 4.0
    assert np.isnan(ticks.price[0])
    assert ticks.price[1] == 410.5
    assert len(options) == 0
    assert bars.close.tolist() == [1.5]
    assert len(buffer) == 0


def test_sdk_models_convert_like_raw_messages(buffer):
    when = datetime.fromtimestamp(NS // 1_000_000_000, UTC)
    trade = Trade("AAPL", {"t": when, "p": 10.0, "s": 5, "x": "V", "i": 1, "c": [], "z": "C"})
    quote = Quote("AAPL", {"t": when, "bp": 9.9, "bs": 1, "ap": 10.1, "as": 2, "bx": "V",
                           "ax": "V", "c": [], "z": "C"})

    assert buffer.add(trade)
    assert buffer.add(quote)
    ticks, _, _ = buffer.drain()

    assert ticks.price[0] == 10.0
    assert ticks.ask[1] == 10.1
    assert ticks.ts_ns[0] == (NS // 1_000_000_000) * 1_000_000_000


@pytest.mark.parametrize(("message", "reason"), [
    ({"T": "t", "S": "AAPL", "p": 1.0, "s": 1, "t": "2026-01-01T00:00:00Z"}, "malformed"),
    ({"T": "t", "S": "AAPL", "p": "1.0", "s": 1, "t": STAMP}, "malformed"),
    ({"T": "t", "S": "AAPL", "p": True, "s": 1, "t": STAMP}, "malformed"),
    ({"T": "q", "S": "AAPL", "bp": 1.0, "t": STAMP}, "malformed"),
    ({"T": "b", "S": "AAPL", "o": 1.0, "t": STAMP}, "malformed"),
    ({"T": "t", "S": "GOOG", "p": 1.0, "s": 1, "t": STAMP}, "unknown_symbol"),
    ({"T": "x", "S": "AAPL", "t": STAMP}, "unexpected_type"),
    ({"S": "AAPL"}, "unexpected_type"),
    ([1, 2], "malformed"),
])
def test_malformed_or_unexpected_messages_are_counted_and_dropped(buffer, message, reason):
    assert buffer.add(message) is False
    assert buffer.dropped == {reason: 1}
    assert len(buffer) == 0


def test_option_messages_are_addressed_by_contract(buffer):
    chain = build_chain("AAPL", [], {"AAPL261218C00200000": _snapshot("AAPL261218C00200000")})
    buffer.set_universe(["AAPL", "MSFT"], {"AAPL": chain})

    assert buffer.add({"T": "q", "S": "AAPL261218C00200000", "bp": 1, "ap": 2, "bs": 1, "as": 1,
                       "t": STAMP}, option=True)
    assert not buffer.add({"T": "b", "S": "AAPL261218C00200000", "t": STAMP}, option=True)
    assert not buffer.add({"T": "q", "S": "AAPL261218P00200000", "t": STAMP}, option=True)
    _, options, _ = buffer.drain()

    assert options.symbol_id.tolist() == [0]
    assert options.contract_index.tolist() == [0]


def test_every_fake_garbage_frame_is_rejected_by_decode_or_buffer(buffer):
    rejected = 0
    for frame in GARBAGE_FRAMES:
        try:
            decoded = msgpack.unpackb(frame)
        except Exception:  # noqa: BLE001 - undecodable is one of the faults
            rejected += 1
            continue
        if not isinstance(decoded, list):
            rejected += 1
            continue
        rejected += all(not buffer.add(m) for m in decoded)
    assert rejected == len(GARBAGE_FRAMES)


def _snapshot(symbol: str, iv: float | None = 0.31) -> OptionsSnapshot:
    raw = {"latestQuote": {"t": "2026-11-20T15:00:00Z", "bp": 1.0, "bs": 1, "ap": 1.2, "as": 2,
                           "bx": "C", "ax": "C", "c": "A"},
           "greeks": {"delta": 0.5, "gamma": 0.02, "theta": -0.03, "vega": 0.1, "rho": 0.05}}
    if iv is not None:
        raw["impliedVolatility"] = iv
    return OptionsSnapshot(symbol, raw)


def _contract(symbol: str, strike: float, kind: str, oi: str | None) -> OptionContract:
    return OptionContract(
        id="x", symbol=symbol, name="n", status="active", tradable=True,
        expiration_date=date(2026, 12, 18), root_symbol="AAPL", underlying_symbol="AAPL",
        underlying_asset_id="00000000-0000-4000-8000-000000000000", type=kind,
        style="american", strike_price=strike, size="100", open_interest=oi)


def test_chain_merges_open_interest_from_contracts_with_vendor_greeks_from_snapshots():
    contracts = [_contract("AAPL261218P00200000", 200, "put", "77"),
                 _contract("AAPL261218C00200000", 200, "call", "1234"),
                 _contract("AAPL261218C00190000", 190, "call", None)]
    snapshots = {"AAPL261218C00200000": _snapshot("AAPL261218C00200000"),
                 "AAPL261218C00210000": _snapshot("AAPL261218C00210000", iv=None)}

    chain = build_chain("AAPL", contracts, snapshots)

    assert chain.contract == ["AAPL261218C00190000", "AAPL261218C00200000",
                              "AAPL261218P00200000", "AAPL261218C00210000"]
    assert chain.open_interest.tolist() == [0, 1234, 77, 0]
    assert chain.is_call.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(chain.vendor_implied_volatility, [np.nan, 0.31, np.nan, np.nan])
    assert chain.vendor_greeks["delta"][1] == 0.5
    assert chain.expiration[0] == np.datetime64("2026-12-18")


def test_barset_conversion_orders_by_time_and_skips_unknown_symbols():
    def bar(symbol: str, minute: int, close: float) -> Bar:
        return Bar(symbol, {"t": datetime(2026, 11, 20, 15, minute, tzinfo=UTC), "o": 1,
                            "h": 2, "l": 0.5, "c": close, "v": 10, "n": 1, "vw": 1})

    batch = bars_from_barset({"MSFT": [bar("MSFT", 0, 3.0)], "GOOG": [bar("GOOG", 0, 9.0)],
                              "AAPL": [bar("AAPL", 0, 1.0), bar("AAPL", 1, 2.0)]},
                             {"AAPL": 0, "MSFT": 1})

    assert batch.symbol_id.tolist() == [0, 1, 0]
    assert batch.close.tolist() == [1.0, 3.0, 2.0]
