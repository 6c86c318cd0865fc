"""Feed batches to record and replay: stock and option ticks, bars and a chain, with checks.

Shared by the recorder's and the replay's tests; :func:`record` writes 40 batches after a
warm-up batch, in files small enough that a session spans several.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.storage import Storage
from market.feeds.base import (
    NS_PER_MINUTE,
    QUOTE,
    TRADE,
    BarBatch,
    FeedBatch,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.feeds.recorder import TickRecorder

SYMBOLS = ("AAPL", "MSFT")
T0 = 1_767_000_000 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE


def aapl_chain() -> OptionContracts:
    """Return two AAPL contracts, one with vendor IV and delta, one without."""
    return OptionContracts(
        underlying="AAPL",
        contract=["AAPL261218C00200000", "AAPL261218P00200000"],
        expiration=np.array(["2026-12-18", "2026-12-18"], dtype="datetime64[D]"),
        strike=np.array([200.0, 200.0]), is_call=np.array([True, False]),
        open_interest=np.array([1200, 900], dtype=np.int64),
        vendor_implied_volatility=np.array([0.25, np.nan]),
        vendor_greeks={"delta": np.array([0.5, np.nan])},
    )


def feed_batches(n: int, rng: np.random.Generator) -> list[FeedBatch]:
    """Return ``n`` batches 100 ms apart: 50 stock ticks and 3 option trades each, bars in
    every tenth, the chain again in the sixth."""
    out = []
    for i in range(n):
        k = 50
        ts = T0 + i * 100_000_000 + np.arange(k) * 1_000_000
        kind = rng.integers(0, 2, k).astype(np.uint8)
        price = np.where(kind == TRADE, 100 + rng.standard_normal(k), np.nan)
        bid = np.where(kind == QUOTE, 99.9 + rng.standard_normal(k), np.nan)
        ticks = TickBatch.from_columns(
            kind=kind, symbol_id=rng.integers(0, 2, k), ts_ns=ts, price=price,
            size=np.where(kind == TRADE, 100.0, np.nan), bid=bid, ask=bid + 0.1,
            bid_size=np.where(kind == QUOTE, 5.0, np.nan),
            ask_size=np.where(kind == QUOTE, 7.0, np.nan))
        options = OptionTickBatch.from_columns(
            kind=np.zeros(3), symbol_id=np.zeros(3), contract_index=[0, 1, 0], ts_ns=ts[:3],
            price=[1.0, 2.0, 3.0], size=[1, 2, 3], bid=np.full(3, np.nan), ask=np.full(3, np.nan),
            bid_size=np.full(3, np.nan), ask_size=np.full(3, np.nan))
        bars = BarBatch.empty() if i % 10 else BarBatch.from_columns(
            symbol_id=[0, 1], ts_ns=[T0 + i * NS_PER_MINUTE] * 2, open=[1, 2], high=[2, 3],
            low=[0.5, 1.5], close=[1.5, 2.5], volume=[10, 20])
        out.append(FeedBatch(ticks, options, bars, {"AAPL": aapl_chain()} if i == 5 else {}))
    return out


def warmup_batch() -> FeedBatch:
    """Return a warm-up batch: the minute before the ticks' bars and the chain."""
    bars = BarBatch.from_columns(
        symbol_id=[0, 1], ts_ns=[T0 - NS_PER_MINUTE] * 2, open=[1, 2], high=[2, 3],
        low=[0.5, 1.5], close=[1.5, 2.5], volume=[10, 20])
    return FeedBatch(TickBatch.empty(), OptionTickBatch.empty(), bars, {"AAPL": aapl_chain()})


def assert_same_batch(a: FeedBatch, b: FeedBatch) -> None:
    """Assert two batches hold equal columns and chains (NaN equal to NaN)."""
    for part in ("ticks", "option_ticks", "bars"):
        x, y = getattr(a, part), getattr(b, part)
        for name in x.dtypes:
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name),
                                          err_msg=f"{part}.{name}")
    assert set(a.chains) == set(b.chains)
    for key, chain in a.chains.items():
        other = b.chains[key]
        assert chain.contract == other.contract
        np.testing.assert_array_equal(chain.strike, other.strike)
        np.testing.assert_array_equal(chain.open_interest, other.open_interest)
        np.testing.assert_array_equal(chain.vendor_implied_volatility,
                                      other.vendor_implied_volatility)


def record(root: Path | str | Storage) -> tuple[Path | str | Storage, list[FeedBatch]]:
    """Record the warm-up batch and 40 batches under ``root``; return it and the batches."""
    written = feed_batches(40, np.random.default_rng(3))
    recorder = TickRecorder(root, row_group_rows=500, rotate_rows=1_000)
    recorder.write(warmup_batch(), SYMBOLS, warmup=True)
    for batch in written:
        recorder.write(batch, SYMBOLS)
    recorder.close()
    return root, written
