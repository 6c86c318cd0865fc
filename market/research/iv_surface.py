"""Implied volatility surfaces from recorded option quotes: per contract and minute, per expiry.

Inputs are a recording's tables (``market/feeds/recorder.py``): option ticks, chains and
stock ticks. For each contract and minute: the last two-sided quote's mid, the
underlying's last quote mid in that minute as spot, time to expiry at the minute's end
(``market.greeks.time_to_expiry``), then BSM implied volatility and Greeks
(``market.greeks``; ``rate`` and ``dividend`` continuous, annual). Per underlying, minute
and expiration:

* ``atm_iv``: the mean implied volatility of the call and put at the strike nearest spot
  (whichever of the two has one; on a tie in distance, the strike of the first row);
* ``skew_25d``: the implied volatility at put delta -0.25 minus that at call delta 0.25,
  each interpolated linearly in delta between that side's quoted contracts (NaN where
  0.25 lies outside their deltas: no extrapolation).

Every contract and minute goes through one implied-volatility and one Greeks kernel call,
and the per-expiry summary is one numba pass over the rows grouped by a sort, so the cost
per contract-minute stays near the kernels' (``bench/bench_iv_surface.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt
import polars as pl

from market.feeds.base import QUOTE
from market.greeks import bsm_greeks_arrays, implied_volatility_arrays, time_to_expiry

NS_PER_MINUTE = 60_000_000_000
GREEKS = ("delta", "gamma", "theta", "vega", "rho")
SUMMARY_KEYS = ("underlying", "minute_ns", "expiration")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def contract_minutes(option_ticks: pl.DataFrame, chains: pl.DataFrame,
                     stock_ticks: pl.DataFrame, *, rate: float, dividend: float
                     ) -> pl.DataFrame:
    """Return one row per contract and minute with spot, mid, implied vol and Greeks.

    Rows are sorted by underlying, minute and contract; ``minute_ns`` is the minute's
    start (Unix ns, UTC) and ``time_to_expiry`` is in years from the minute's end.
    """
    def last_quotes(frame: pl.DataFrame, key: str) -> pl.DataFrame:
        return (frame.filter((pl.col("kind") == QUOTE) & (pl.col("bid") > 0)
                             & (pl.col("ask") >= pl.col("bid")))
                .with_columns((pl.col("ts_ns") // NS_PER_MINUTE * NS_PER_MINUTE)
                              .alias("minute_ns"),
                              ((pl.col("bid") + pl.col("ask")) / 2).alias("mid"))
                .sort("ts_ns").group_by(key, "minute_ns", maintain_order=True)
                .agg(pl.col("mid").last(), pl.col("symbol").last().alias("underlying")))

    options = last_quotes(option_ticks.filter(pl.col("contract").is_not_null()), "contract")
    # the ranks of the names among the (few) spots and definitions sort the rows by one
    # integer key: a third of polars' time went into sorting by the two strings
    spots = last_quotes(stock_ticks, "symbol").select(
        pl.col("symbol").alias("underlying"), "minute_ns", pl.col("mid").alias("spot"),
        pl.col("symbol").rank("dense").cast(pl.Int64).alias("_underlying_rank"))
    definitions = (chains.select("contract", "expiration", "strike", "is_call")
                   .unique("contract", keep="last")
                   .with_columns(pl.col("contract").rank("dense").cast(pl.Int64)
                                 .alias("_contract_rank")))
    frame = options.join(definitions, on="contract").join(spots, on=["underlying",
                                                                      "minute_ns"])
    helpers = ("_underlying_rank", "_contract_rank")
    if frame.height == 0:
        return frame.drop(helpers)
    first, last = frame["minute_ns"].min(), frame["minute_ns"].max()
    minutes = (int(last) - int(first)) // NS_PER_MINUTE + 1  # type: ignore[arg-type]
    if minutes * (spots.height + 1) * (definitions.height + 1) < 2**62:
        minute = (pl.col("minute_ns") - first) // NS_PER_MINUTE
        frame = frame.sort((pl.col("_underlying_rank") * minutes + minute)
                           * (definitions.height + 1) + pl.col("_contract_rank"))
    else:  # the key would overflow: sort by the columns themselves
        frame = frame.sort("underlying", "minute_ns", "contract")
    frame = frame.drop(helpers)
    minute_end = frame["minute_ns"].to_numpy().astype(np.int64) + NS_PER_MINUTE
    expiration = frame["expiration"].to_numpy().astype("datetime64[D]")
    # time_to_expiry's arithmetic is elementwise, so an array of clock readings (one per
    # row) gives each row what a call with its own minute's end would
    years = time_to_expiry(expiration, minute_end)  # type: ignore[arg-type]
    is_call = frame["is_call"].to_numpy().astype(np.bool_)
    spot = frame["spot"].to_numpy()
    strike = frame["strike"].to_numpy()
    rates, dividends = np.asarray([rate]), np.asarray([dividend])
    vol = implied_volatility_arrays(is_call, frame["mid"].to_numpy(), spot, strike, years,
                                    rates, dividends)
    greeks = bsm_greeks_arrays(is_call, spot, strike, years, rates, dividends, vol)
    return frame.with_columns(
        pl.Series("time_to_expiry", years), pl.Series("implied_volatility", vol),
        *(pl.Series(name, greeks[i + 1]) for i, name in enumerate(GREEKS)))


@numba.njit(cache=True)
def _at_delta(delta: F64, vol: F64, take: npt.NDArray[np.bool_], start: int, stop: int,
              target: float, d: F64, v: F64) -> float:
    """Interpolate vol at ``target`` delta over rows start:stop where ``take`` (scratch d, v)."""
    count = 0
    for i in range(start, stop):
        if take[i] and math.isfinite(delta[i]) and math.isfinite(vol[i]):
            d[count] = delta[i]
            v[count] = vol[i]
            count += 1
    if count == 0:
        return math.nan
    order = np.argsort(d[:count])
    ds = d[:count][order]
    vs = v[:count][order]
    if not ds[0] <= target <= ds[count - 1]:
        return math.nan
    return float(np.interp(target, ds, vs))


@numba.njit(cache=True)
def _summarise(starts: I64, spot: F64, strike: F64, vol: F64, is_call: npt.NDArray[np.bool_],
               delta: F64, atm_out: F64, skew_out: F64) -> None:
    """ATM vol and 25-delta skew of each group of rows ``starts[g]:starts[g + 1]``."""
    puts = ~is_call
    width = 0
    for g in range(starts.shape[0] - 1):
        width = max(width, starts[g + 1] - starts[g])
    d = np.empty(width)
    v = np.empty(width)
    for g in range(starts.shape[0] - 1):
        start, stop = starts[g], starts[g + 1]
        level = spot[start]
        # the first valid row nearest spot, as numpy's argmin picks (a NaN distance wins)
        nearest = math.nan
        best = math.inf
        found = False
        for i in range(start, stop):
            if math.isfinite(vol[i]):
                distance = abs(strike[i] - level)
                if math.isnan(distance):
                    nearest = math.nan
                    found = True
                    break
                if not found or distance < best:
                    best = distance
                    nearest = strike[i]
                    found = True
        total = 0.0
        count = 0
        for i in range(start, stop):
            if math.isfinite(vol[i]) and strike[i] == nearest:
                total += vol[i]
                count += 1
        atm_out[g] = total / count if count else math.nan
        skew_out[g] = (_at_delta(delta, vol, puts, start, stop, -0.25, d, v)
                       - _at_delta(delta, vol, is_call, start, stop, 0.25, d, v))


def expiry_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Return ATM implied vol and 25-delta skew per underlying, minute and expiration.

    ``rows`` as :func:`contract_minutes` returns them; groups come out in the order of
    their first row, each with the spot of that row.
    """
    if rows.height == 0:
        return pl.DataFrame()
    keyed = rows.select(*SUMMARY_KEYS).with_row_index("_row")
    groups = (keyed.group_by(*SUMMARY_KEYS, maintain_order=True)
              .agg(pl.col("_row").first()).with_row_index("_group"))
    group_of = (keyed.join(groups.select(*SUMMARY_KEYS, "_group"), on=list(SUMMARY_KEYS),
                           how="left", nulls_equal=True)
                .sort("_row")["_group"].to_numpy().astype(np.int64))
    order = np.argsort(group_of, kind="stable")  # each group's rows together, in row order
    counts = np.bincount(group_of, minlength=groups.height)
    starts = np.zeros(groups.height + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])

    def column(name: str) -> F64:
        return np.ascontiguousarray(rows[name].to_numpy()[order], dtype=np.float64)

    atm = np.empty(groups.height)
    skew = np.empty(groups.height)
    _summarise(starts, column("spot"), column("strike"), column("implied_volatility"),
               np.ascontiguousarray(rows["is_call"].to_numpy()[order], dtype=np.bool_),
               column("delta"), atm, skew)
    first = groups["_row"].to_numpy()
    return groups.select(*SUMMARY_KEYS).with_columns(
        pl.Series("spot", rows["spot"].to_numpy()[first].astype(np.float64)),
        pl.Series("atm_iv", atm), pl.Series("skew_25d", skew))
