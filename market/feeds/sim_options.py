"""Simulated option chains: listing, volatility surface, open interest, quotes and trades.

All underlyings' contracts sit in flat arrays (:class:`ChainSet`) so one period's
option messages are drawn, priced (``market.greeks.bsm_greeks``) and quoted in a
handful of vectorised calls, whatever the number of underlyings.

Volatility surface, per underlying, in forward log-moneyness ``k = ln(K/F)``::

    atm(T)   = sqrt(theta + (v - theta)(1 - e^{-kappa T})/(kappa T))   (Heston term structure)
    z        = clip(k / (atm(T) sqrt(T)), -4, 4)                         (standard deviations)
    sigma    = atm(T) * max(0.5, 1 + skew z + smile z^2)                 (skew < 0: put skew)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import numpy.typing as npt

from market.feeds.base import (
    F64,
    I32,
    I64,
    NS_PER_SECOND,
    QUOTE,
    TRADE,
    OptionContracts,
    OptionTickBatch,
)
from market.feeds.sim_calendar import option_expirations
from market.feeds.sim_process import ProcessParams, expected_average_variance
from market.greeks import bsm_greeks

NS_PER_YEAR = 365 * 86_400 * NS_PER_SECOND
EXPIRY_TIME_UTC = time(20, 0)  # 16:00 New York, as market.greeks takes it
_NICE_INCREMENTS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)
OPTION_TRADE_FRACTION = 0.25


def _nice_increment(wanted: float) -> float:
    return min(_NICE_INCREMENTS, key=lambda i: abs(np.log(i / wanted)))


def strike_grid(spot: float, width: float = 0.30, near: float = 0.10, near_count: int = 20) -> F64:
    """Return listed strikes: a fine grid within ``±near`` of ``spot``, a coarse one to ``±width``.

    Increments are round (0.5, 1, 2.5, 5, 10, 25, ...), the coarse one about four
    times the fine one and a multiple of it, as on listed equity options; under
    25.00 the fine increment runs to ``±width``.
    """
    fine = _nice_increment(2.0 * near * spot / near_count)
    # Cheap underlyings list the fine (0.5) increment all the way out.
    coarse = fine if spot < 25.0 else _nice_increment(4.0 * fine)
    grids = []
    for band, increment in ((near, fine), (width, coarse)):
        low = np.ceil(spot * (1.0 - band) / increment) * increment
        high = np.floor(spot * (1.0 + band) / increment) * increment
        grids.append(np.arange(low, high + increment / 2, increment))
    strikes = np.unique(np.round(np.concatenate(grids), 2))
    return np.asarray(strikes[strikes > 0], np.float64)


def surface_vol(
    log_moneyness: F64, years: F64, theta: F64, kappa: F64, variance: F64, skew: F64,
    smile: F64,
) -> F64:
    """Return the surface's implied volatility (arrays broadcast; see the module doc)."""
    atm = np.sqrt(expected_average_variance(theta, kappa, variance, years))
    z = np.clip(log_moneyness / (atm * np.sqrt(np.maximum(years, 1e-6))), -4.0, 4.0)
    return np.asarray(atm * np.maximum(0.5, 1.0 + skew * z + smile * z * z), np.float64)


@dataclass(slots=True)
class ChainSet:
    """Every underlying's listed contracts on one day, flattened for vectorised work."""

    day: date
    contracts: dict[str, OptionContracts]
    symbol_id: I32  # per flat contract
    contract_index: I32  # index within its underlying's OptionContracts
    strike: F64
    expiry_ns: I64  # 20:00 UTC on the expiration date
    is_call: npt.NDArray[np.bool_]
    # Sampling: underlying by activity, then contract by weight within its block.
    offset: I64  # per underlying (+1 at the end): where its contracts start
    local_cumulative: F64  # running weight within the underlying's block, ending at 1
    activity_cumulative: F64  # running activity over underlyings

    def __len__(self) -> int:
        return len(self.strike)


def _expiry_ns(day: date) -> int:
    return int(datetime.combine(day, EXPIRY_TIME_UTC, tzinfo=UTC).timestamp()) * NS_PER_SECOND


def list_chains(
    symbols: tuple[str, ...], spot: F64, params: ProcessParams, variance: F64, day: date,
    now_ns: int, seed: int, rate: float, dividend_yield: float,
) -> ChainSet:
    """List every underlying's chain for ``day`` around today's ``spot``, with open interest.

    Open interest is drawn from ``(seed, day, symbol)``: bigger near the money,
    for monthlies and for puts below spot, growing with time to expiry.
    """
    expirations = option_expirations(day)
    exp_days = np.array([d for d, _ in expirations], "datetime64[D]")
    exp_ns = np.array([_expiry_ns(d) for d, _ in expirations], np.int64)
    monthly = np.array([m for _, m in expirations], np.bool_)
    exp_text = [f"{d:%y%m%d}" for d, _ in expirations]
    years_by_exp = np.maximum((exp_ns - now_ns) / NS_PER_YEAR, 1.0 / 365)
    contracts: dict[str, OptionContracts] = {}
    parts: dict[str, list[Any]] = {k: [] for k in ("sym", "idx", "k", "exp", "call", "w")}
    for sid, symbol in enumerate(symbols):
        strikes = strike_grid(float(spot[sid]))
        n_k, n_e = len(strikes), len(expirations)
        # Order: expiration, then strike, then call before put.
        e_index = np.repeat(np.arange(n_e), 2 * n_k)
        strike = np.tile(np.repeat(strikes, 2), n_e)
        is_call = np.tile(np.array([True, False]), n_e * n_k)
        years = years_by_exp[e_index]
        forward = spot[sid] * np.exp((rate - dividend_yield) * years)
        k = np.log(strike / forward)
        atm = np.sqrt(
            expected_average_variance(
                params.theta[sid], params.kappa[sid], variance[sid], years
            )
        )
        distance = np.abs(k) / (atm * np.sqrt(years) + 0.02)
        rng = np.random.default_rng([seed, 3, day.toordinal(), zlib.crc32(symbol.encode())])
        is_monthly = monthly[e_index]
        tenor = np.minimum(1.0, np.sqrt(years * 365 / 30))
        put_wing = np.where(~is_call & (k < 0), 1.4, 1.0)
        base = 4_000.0 * np.sqrt(params.activity[sid] * len(symbols))
        open_interest = np.round(
            base * np.exp(-distance) * np.where(is_monthly, 3.0, 1.0) * tenor * put_wing
            * rng.lognormal(0.0, 0.5, len(strike))
        ).astype(np.int64)
        weight = np.exp(-1.5 * distance) / (years * 365) * np.where(is_monthly, 1.5, 1.0)
        cumulative = np.cumsum(weight)
        parts["w"].append(cumulative / cumulative[-1])
        # occ_symbol's format, assembled from per-expiry and per-strike parts (fast).
        suffixes = [
            f"{cp}{round(k * 1000):08d}" for k in strikes.tolist() for cp in ("C", "P")
        ]
        text = [f"{symbol}{day_text}" + suffix for day_text in exp_text for suffix in suffixes]
        contracts[symbol] = OptionContracts(
            underlying=symbol, contract=text, expiration=exp_days[e_index], strike=strike,
            is_call=is_call, open_interest=open_interest,
        )
        parts["sym"].append(np.full(len(strike), sid, np.int32))
        parts["idx"].append(np.arange(len(strike), dtype=np.int32))
        parts["k"].append(strike)
        parts["exp"].append(exp_ns[e_index])
        parts["call"].append(is_call)
    return ChainSet(
        day=day, contracts=contracts, symbol_id=np.concatenate(parts["sym"]),
        contract_index=np.concatenate(parts["idx"]), strike=np.concatenate(parts["k"]),
        expiry_ns=np.concatenate(parts["exp"]), is_call=np.concatenate(parts["call"]),
        offset=np.cumsum([0] + [len(c) for c in contracts.values()]).astype(np.int64),
        local_cumulative=np.concatenate(parts["w"]),
        activity_cumulative=np.cumsum(params.activity),
    )


def _draw_contracts(chains: ChainSet, count: int, rng: np.random.Generator) -> I64:
    """Draw flat contract indices: underlying by activity, then within its block.

    The second step is a bisection bounded to each draw's block, vectorised
    over draws: ~log2(block) passes over small arrays instead of a search of
    the whole (cache-missing) contract table.
    """
    total = chains.activity_cumulative[-1]
    draws = np.sort(rng.random(count)) * total
    underlying = np.searchsorted(chains.activity_cumulative, draws, side="right")
    underlying = np.minimum(underlying, len(chains.activity_cumulative) - 1)
    low, high = chains.offset[underlying], chains.offset[underlying + 1] - 1
    target = rng.random(count)
    widest = int((chains.offset[1:] - chains.offset[:-1]).max())
    for _ in range(max(widest, 1).bit_length()):
        middle = (low + high) // 2
        right = chains.local_cumulative[middle] <= target
        low = np.where(right, middle + 1, low)
        high = np.where(right, high, middle)
    return np.asarray(np.minimum(low, chains.offset[underlying + 1] - 1), np.int64)


def option_ticks(
    chains: ChainSet, count: int, start_ns: int, span_ns: int, spot: F64, variance: F64,
    params: ProcessParams, rate: float, dividend_yield: float, rng: np.random.Generator,
) -> OptionTickBatch:
    """Draw ``count`` option quotes and trades in ``(start_ns, start_ns + span_ns]``.

    Contracts are drawn by activity weight (near the money, short expiries);
    each is priced off the surface at the underlying's current ``spot`` and
    ``variance`` and quoted around that price (tick 0.01 under 3.00, else 0.05).
    """
    if count == 0 or len(chains) == 0:
        return OptionTickBatch.empty()
    flat = _draw_contracts(chains, count, rng)
    offset = rng.integers(1, span_ns + 1, count, dtype=np.int64)
    order = np.argsort(offset)
    return _option_messages(
        chains, flat[order], start_ns + offset[order], OPTION_TRADE_FRACTION, spot, variance,
        params, rate, dividend_yield, rng,
    )


def chain_snapshot(
    chains: ChainSet, now_ns: int, spot: F64, variance: F64, params: ProcessParams,
    rate: float, dividend_yield: float, rng: np.random.Generator,
) -> OptionTickBatch:
    """Return one quote per listed contract at ``now_ns`` (what a new listing opens with)."""
    if len(chains) == 0:
        return OptionTickBatch.empty()
    flat = np.arange(len(chains), dtype=np.int64)
    ts = np.full(len(chains), now_ns, np.int64)
    return _option_messages(
        chains, flat, ts, 0.0, spot, variance, params, rate, dividend_yield, rng
    )


def _option_messages(
    chains: ChainSet, flat: I64, ts: I64, trade_fraction: float, spot: F64, variance: F64,
    params: ProcessParams, rate: float, dividend_yield: float, rng: np.random.Generator,
) -> OptionTickBatch:
    count = len(flat)
    sym = chains.symbol_id[flat]
    s = spot[sym]
    strike = chains.strike[flat]
    years = np.maximum((chains.expiry_ns[flat] - ts) / NS_PER_YEAR, 1e-4)
    forward = s * np.exp((rate - dividend_yield) * years)
    sigma = surface_vol(
        np.log(strike / forward), years, params.theta[sym], params.kappa[sym], variance[sym],
        params.skew[sym], params.smile[sym],
    )
    is_call = chains.is_call[flat]
    price = np.asarray(
        bsm_greeks(is_call, s, strike, years, rate, dividend_yield, sigma)["price"], np.float64
    )
    # No-arbitrage floor (the forward's intrinsic value), against rounding in the model.
    forward_intrinsic = (s * np.exp(-dividend_yield * years) - strike * np.exp(-rate * years))
    price = np.maximum(price, np.where(is_call, forward_intrinsic, -forward_intrinsic))
    tick = np.where(price < 3.0, 0.01, 0.05)
    spread = np.maximum(tick, 0.03 * price**0.65 * np.sqrt(sigma / 0.3))
    bid = np.maximum(np.floor((price - spread / 2) / tick + 1e-9) * tick, 0.0)
    ask = np.maximum(np.ceil((price + spread / 2) / tick - 1e-9) * tick, bid + tick)
    bid, ask = np.round(bid, 2), np.round(ask, 2)
    kind = np.where(rng.random(count) < trade_fraction, TRADE, QUOTE).astype(np.uint8)
    trade = kind == TRADE
    side = rng.random(count)
    mid = np.round((bid + ask) / 2, 2)
    trade_price = np.where(side < 0.45, bid, np.where(side < 0.9, ask, mid))
    trade_price = np.where(trade_price > 0, trade_price, ask)
    size = 1.0 + np.floor(rng.pareto(1.3, count))
    size = np.where(rng.random(count) < 0.03, size * 10, np.minimum(size, 2_000))
    nan = np.full(count, np.nan)
    quote_size = 1.0 + np.floor(rng.exponential(40.0, (2, count)))
    return OptionTickBatch(
        kind=kind, symbol_id=sym.astype(np.int32),
        contract_index=chains.contract_index[flat].astype(np.int32), ts_ns=ts.astype(np.int64),
        price=np.where(trade, trade_price, nan), size=np.where(trade, size, nan),
        bid=np.where(trade, nan, bid), ask=np.where(trade, nan, ask),
        bid_size=np.where(trade, nan, quote_size[0]), ask_size=np.where(trade, nan, quote_size[1]),
    )
