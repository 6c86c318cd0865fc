"""The chain book: ticks land on their contracts, prices and IV against vollib, relistings."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from market.chains import QUOTE_ASK, QUOTE_BID, QUOTE_LAST, ChainBook
from market.feeds.base import QUOTE, TRADE, OptionContracts, OptionTickBatch, occ_symbol
from market.greeks import time_to_expiry

NOW_NS = int(datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp() * 1e9)
EXPIRY = np.datetime64("2026-12-18")
RATE, DIVIDEND = 0.04, 0.01


def _chain(underlying: str, strikes: tuple[float, ...], open_interest: int = 100
           ) -> OptionContracts:
    n = 2 * len(strikes)
    calls = np.array([True, False] * len(strikes))
    strike = np.repeat(np.array(strikes), 2)
    return OptionContracts(
        underlying=underlying,
        contract=[occ_symbol(underlying, EXPIRY, c, k) for c, k in zip(calls, strike, strict=True)],
        expiration=np.full(n, EXPIRY), strike=strike, is_call=calls,
        open_interest=np.full(n, open_interest, np.int64))


def _ticks(rows: list[tuple[int, int, float, float, float, float]]) -> OptionTickBatch:
    """Rows of (kind, contract_index, price, size, bid, ask)."""
    kind, index, price, size, bid, ask = (np.array(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return OptionTickBatch.from_columns(
        kind=kind, symbol_id=np.zeros(n), contract_index=index, ts_ns=np.full(n, NOW_NS),
        price=price, size=size, bid=bid, ask=ask, bid_size=np.ones(n), ask_size=np.ones(n))


def _book() -> ChainBook:
    book = ChainBook(3, rate=RATE, dividend_yield=DIVIDEND)
    book.set_chains({0: _chain("AAPL", (180.0, 190.0)), 2: _chain("SPY", (590.0,))})
    return book


def test_each_slot_locates_its_own_contracts() -> None:
    book = _book()

    assert list(book.rows(0)) == [0, 1, 2, 3]
    assert list(book.rows(2)) == [4, 5]
    assert not book.has_chain(1)
    assert list(book.strike[book.rows(2)]) == [590.0, 590.0]


def test_ticks_land_on_their_contract_and_bad_ones_are_counted() -> None:
    book = _book()
    batch = _ticks([(QUOTE, 1, 0, 0, 3.1, 3.3),   # AAPL 180 put quote
                    (TRADE, 0, 12.5, 4, 0, 0),    # AAPL 180 call trade
                    (QUOTE, 2, 0, 0, 2.0, 1.9),   # crossed: rejected
                    (TRADE, 9, 1.0, 1, 0, 0),     # no such contract: rejected
                    (QUOTE, 0, 0, 0, 1.0, 1.1)])  # a row of another shard's underlying
    slots = np.array([0, 0, 0, 0, -1], np.int32)

    book.apply(batch, slots)

    assert (book.quotes[1, QUOTE_BID], book.quotes[1, QUOTE_ASK]) == (3.1, 3.3)
    assert book.quotes[0, QUOTE_LAST] == 12.5
    assert book.volume[0] == 4
    assert np.isnan(book.quotes[2, QUOTE_BID])
    assert book.rejected == 2  # the other shard's row is skipped, not counted
    assert book.dirty[0]


def test_refresh_prices_at_the_mid_else_the_last_and_solves_iv_as_vollib_does() -> None:
    book = _book()
    book.apply(_ticks([(QUOTE, 1, 0, 0, 3.1, 3.3), (TRADE, 0, 12.5, 4, 0, 0)]),
               np.zeros(2, np.int32))
    spot = np.array([189.0, 0.0, 600.0])

    refreshed = book.refresh(np.array([0]), spot, NOW_NS)

    t = float(time_to_expiry(np.array([EXPIRY]), NOW_NS)[0])
    assert refreshed == 4
    assert book.price[1] == pytest.approx(3.2)  # the mid
    assert book.price[0] == 12.5  # no quote: the last trade
    for row, flag in ((0, "c"), (1, "p")):
        expected = vollib_iv(book.price[row], 189.0, book.strike[row], t, RATE, DIVIDEND, flag)
        assert book.iv[row] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(book.iv[2])  # no price: no IV, and no Greeks
    assert np.all(np.isnan(book.greeks[2]))
    assert not book.dirty[0]
    assert book.version[0] == 1


def test_a_relisting_keeps_quotes_and_tracks_the_open_interest_change() -> None:
    book = _book()
    book.apply(_ticks([(QUOTE, 3, 0, 0, 7.0, 7.2)]), np.zeros(1, np.int32))
    kept = book.definitions[0].contract[3]  # AAPL 190 put

    book.set_chains({0: _chain("AAPL", (170.0, 190.0), open_interest=250)})

    row = book.rows(0)[book.definitions[0].contract.index(kept)]
    new_row = book.rows(0)[0]  # AAPL 170 call: a new listing
    assert (book.quotes[row, QUOTE_BID], book.quotes[row, QUOTE_ASK]) == (7.0, 7.2)
    assert (book.previous_open_interest[row], book.open_interest[row]) == (100, 250)
    assert book.previous_open_interest[new_row] == book.open_interest[new_row] == 250
    assert list(book.rows(2)) == [4, 5]  # the other chain is untouched
