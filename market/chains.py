"""Option chains of the underlyings one shard owns, in flat arrays (no Ray here).

Every contract of every chain sits in one set of columns; ``offset[slot]`` and
``count[slot]`` locate an underlying's contracts, so one numba pass applies a
whole :class:`OptionTickBatch` and one vectorised call refreshes implied
volatility and Greeks for any set of chains.

Conventions (CONTRACT §5): ``price`` is the mid when bid and ask are both
positive, else the last trade; ``implied_volatility`` solves BSM for that price
with the book's rate and dividend yield; Greeks use that volatility and are
null (NaN here) where it does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np
import numpy.typing as npt

from market.feeds.base import QUOTE, OptionContracts, OptionTickBatch
from market.greeks import bsm_greeks_arrays, implied_volatility_arrays, time_to_expiry

GREEK_NAMES = ("delta", "gamma", "theta", "vega", "rho")
# Columns of ChainBook.quotes, one row per contract.
QUOTE_BID, QUOTE_ASK, QUOTE_BID_SIZE, QUOTE_ASK_SIZE, QUOTE_LAST, QUOTE_LAST_SIZE = range(6)
N_QUOTE_COLUMNS = 6


@numba.njit(cache=True)
def _apply_option_ticks(
    kind: npt.NDArray[np.uint8], index: npt.NDArray[np.int64], price: npt.NDArray[np.float64],
    size: npt.NDArray[np.float64], bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64],
    bid_size: npt.NDArray[np.float64], ask_size: npt.NDArray[np.float64],
    quotes: npt.NDArray[np.float64], volume: npt.NDArray[np.int64],
    changed: npt.NDArray[np.bool_],
) -> int:
    """Apply option ticks to ``quotes`` (columns ``QUOTE_BID`` .. ``QUOTE_LAST_SIZE``)."""
    rejected = 0
    for i in range(len(kind)):
        c = index[i]
        if c < 0:
            rejected += 1
            continue
        if kind[i] == QUOTE:
            if bid[i] >= 0.0 and ask[i] >= bid[i]:
                quotes[c, QUOTE_BID] = bid[i]
                quotes[c, QUOTE_ASK] = ask[i]
                quotes[c, QUOTE_BID_SIZE] = bid_size[i]
                quotes[c, QUOTE_ASK_SIZE] = ask_size[i]
                changed[c] = True
            else:
                rejected += 1
        elif price[i] > 0.0 and size[i] > 0.0:
            quotes[c, QUOTE_LAST] = price[i]
            quotes[c, QUOTE_LAST_SIZE] = size[i]
            volume[c] += np.int64(size[i])
            changed[c] = True
        else:
            rejected += 1
    return rejected


class ChainBook:
    """Quotes, volume, open interest, implied volatility and Greeks per contract."""

    def __init__(self, n_slots: int, *, rate: float, dividend_yield: float) -> None:
        self.rate = rate
        self.dividend_yield = dividend_yield
        self.offset = np.zeros(n_slots, np.int64)
        self.count = np.zeros(n_slots, np.int64)
        self.definitions: dict[int, OptionContracts] = {}
        self.refreshed_ns = np.zeros(n_slots, np.int64)
        self.dirty = np.zeros(n_slots, np.bool_)
        self.version = np.zeros(n_slots, np.int64)
        self.rejected = 0
        self._alloc(0)

    def _alloc(self, n: int) -> None:
        self.slot = np.zeros(n, np.int32)
        self.expiration = np.zeros(n, "datetime64[D]")
        self.strike = np.zeros(n)
        self.is_call = np.zeros(n, np.bool_)
        self.open_interest = np.zeros(n, np.int64)
        self.previous_open_interest = np.zeros(n, np.int64)
        self.quotes = np.full((n, N_QUOTE_COLUMNS), np.nan)
        self.volume = np.zeros(n, np.int64)
        self.changed = np.zeros(n, np.bool_)
        self.price = np.full(n, np.nan)
        self.time_to_expiry = np.zeros(n)
        self.iv = np.full(n, np.nan)
        self.greeks = np.full((n, len(GREEK_NAMES)), np.nan)
        self.vendor_iv = np.full(n, np.nan)
        self.vendor_greeks = np.full((n, len(GREEK_NAMES)), np.nan)
        self.underlying_at_refresh = np.full(len(self.offset), np.nan)

    def set_chains(self, chains: Mapping[int, OptionContracts]) -> None:
        """Install or replace contract definitions (new listings, daily open interest).

        Contracts that stay listed (same OCC symbol) keep their quotes and
        volume, and their old open interest becomes ``previous_open_interest``
        so the change can be tracked; new contracts start with no change.
        """
        old_row = {occ: row for s, d in self.definitions.items()
                   for row, occ in zip(self.rows(s), d.contract, strict=True)}
        old_quotes, old_volume, old_oi = self.quotes, self.volume, self.open_interest
        self.definitions.update(chains)
        self._alloc(sum(len(d) for d in self.definitions.values()))
        position = 0
        for s in sorted(self.definitions):
            d = self.definitions[s]
            self.offset[s], self.count[s] = position, len(d)
            part = slice(position, position + len(d))
            self.slot[part] = s
            self.expiration[part] = d.expiration.astype("datetime64[D]")
            self.strike[part] = d.strike
            self.is_call[part] = d.is_call
            self.open_interest[part] = d.open_interest
            self.previous_open_interest[part] = d.open_interest
            if d.vendor_implied_volatility is not None:
                self.vendor_iv[part] = d.vendor_implied_volatility
            for j, name in enumerate(GREEK_NAMES):
                if d.vendor_greeks is not None and name in d.vendor_greeks:
                    self.vendor_greeks[part, j] = d.vendor_greeks[name]
            for row, occ in enumerate(d.contract, start=position):
                was = old_row.get(occ)
                if was is not None:
                    self.quotes[row] = old_quotes[was]
                    self.volume[row] = old_volume[was]
                    self.previous_open_interest[row] = old_oi[was]
            position += len(d)
        self.dirty[list(chains)] = True

    def apply(self, batch: OptionTickBatch, slots: npt.NDArray[np.int32]) -> None:
        """Apply option trades and quotes; ``slots`` maps the batch's rows to local slots."""
        if len(batch) == 0:
            return
        ok = (slots >= 0) & (batch.contract_index >= 0)
        ok &= batch.contract_index < np.where(slots >= 0, self.count[np.maximum(slots, 0)], 0)
        index = np.where(ok, self.offset[np.maximum(slots, 0)] + batch.contract_index, -1)
        index[slots < 0] = -2  # rows of other shards: skip without counting
        keep = index != -2
        self.rejected += int(_apply_option_ticks(
            batch.kind[keep], index[keep], batch.price[keep], batch.size[keep],
            batch.bid[keep], batch.ask[keep], batch.bid_size[keep], batch.ask_size[keep],
            self.quotes, self.volume, self.changed))
        touched = np.unique(slots[ok])
        self.dirty[touched] = True

    def refresh(self, slots: npt.NDArray[np.intp], underlying: npt.NDArray[np.float64],
                now_ns: int) -> int:
        """Recompute price, implied volatility and Greeks of the chains ``slots``.

        ``underlying`` holds each slot's spot price (indexed by slot). Returns
        the number of contracts recomputed.
        """
        if len(slots) == 0:
            return 0
        rows = np.concatenate([np.arange(self.offset[s], self.offset[s] + self.count[s])
                               for s in slots])
        if len(rows) == 0:
            return 0
        bid, ask = self.quotes[rows, QUOTE_BID], self.quotes[rows, QUOTE_ASK]
        last = self.quotes[rows, QUOTE_LAST]
        price = np.where((bid > 0) & (ask > 0), 0.5 * (bid + ask), last)
        spot = underlying[self.slot[rows]]
        t = time_to_expiry(self.expiration[rows], now_ns)
        is_call, strike = self.is_call[rows], self.strike[rows]
        r, q = np.array([self.rate]), np.array([self.dividend_yield])
        iv = implied_volatility_arrays(is_call, price, spot, strike, t, r, q)
        valid = np.isfinite(iv)
        out = bsm_greeks_arrays(is_call, spot, strike, t, r, q, np.where(valid, iv, 0.0))
        self.price[rows] = price
        self.time_to_expiry[rows] = t
        self.iv[rows] = iv
        self.greeks[rows] = np.where(valid[:, None], out[1:].T, np.nan)
        self.refreshed_ns[slots] = now_ns
        self.dirty[slots] = False
        self.underlying_at_refresh[slots] = underlying[slots]
        self.version[slots] += 1
        return len(rows)

    def rows(self, slot: int) -> npt.NDArray[np.int64]:
        """Flat row indices of one underlying's contracts."""
        return np.arange(self.offset[slot], self.offset[slot] + self.count[slot])

    def has_chain(self, slot: int) -> bool:
        """True when the underlying has listed contracts."""
        return bool(self.count[slot] > 0)
