"""The feed contract's columnar batches and OCC option symbols."""

from __future__ import annotations

import numpy as np
import pytest

from market.feeds.base import BarBatch, TickBatch, occ_symbol, parse_occ_symbol


def _ticks(n: int, start: int = 0) -> TickBatch:
    return TickBatch.from_columns(
        ts_ns=np.arange(start, start + n, dtype=np.int64),
        symbol_id=np.arange(n, dtype=np.int32) % 3,
        kind=np.zeros(n, np.int8),
        price=np.linspace(100, 101, n), size=np.ones(n), bid=np.full(n, 99.9),
        ask=np.full(n, 100.1), bid_size=np.ones(n), ask_size=np.ones(n),
    ) if n else TickBatch.empty()


def test_columns_keep_their_length_through_take_and_concat() -> None:
    first, second = _ticks(5), _ticks(3, start=5)

    joined = TickBatch.concat([first, TickBatch.empty(), second])
    odd = joined.take(np.flatnonzero(joined.ts_ns % 2 == 1))

    assert len(joined) == 8
    np.testing.assert_array_equal(joined.ts_ns, np.arange(8))
    np.testing.assert_array_equal(odd.ts_ns, [1, 3, 5, 7])
    assert set(odd.to_dict()) == set(joined.to_dict())
    assert len(TickBatch.empty()) == 0


def test_columns_are_cast_to_their_declared_types() -> None:
    batch = _ticks(4)

    assert {name: column.dtype for name, column in batch.to_dict().items()} == {
        name: np.dtype(dtype) for name, dtype in TickBatch.dtypes.items()}


def test_columns_of_different_lengths_are_refused() -> None:
    columns = {name: np.zeros(2) for name in BarBatch.dtypes}
    columns["close"] = np.zeros(3)

    with pytest.raises(ValueError, match="differ in length"):
        BarBatch.from_columns(**columns)


@pytest.mark.parametrize(("contract", "parts"), [
    ("AAPL251219C00200000", ("AAPL", "2025-12-19", True, 200.0)),
    ("SPY260116P00587500", ("SPY", "2026-01-16", False, 587.5)),
    ("BRKB270115C01234560", ("BRKB", "2027-01-15", True, 1234.56)),
])
def test_occ_symbols_parse_into_their_parts_and_back(contract: str, parts: tuple) -> None:
    underlying, day, is_call, strike = parts

    parsed = parse_occ_symbol(contract)

    assert parsed == (underlying, np.datetime64(day, "D"), is_call, strike)
    assert occ_symbol(underlying, np.datetime64(day), is_call, strike) == contract


@pytest.mark.parametrize("bad", ["", "AAPL", "AAPL251219X00200000", "251219C00200000",
                                 "AAPL25121AC00200000", "AAPL251219C0020000A"])
def test_malformed_occ_symbols_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an OCC option symbol"):
        parse_occ_symbol(bad)
