"""Implied volatility surfaces from recorded option quotes: per contract and minute, per expiry.

Inputs are a recording's tables (``market/feeds/recorder.py``): option ticks, chains and
stock ticks. For each contract and minute: the last two-sided quote's mid, the
underlying's last quote mid in that minute as spot, time to expiry at the minute's end
(``market.greeks.time_to_expiry``), then BSM implied volatility and Greeks
(``market.greeks``; ``rate`` and ``dividend`` continuous, annual). Per underlying, minute
and expiration:

* ``atm_iv``: the mean implied volatility of the call and put at the strike nearest spot
  (whichever of the two has one);
* ``skew_25d``: the implied volatility at put delta -0.25 minus that at call delta 0.25,
  each interpolated linearly in delta between that side's quoted contracts (NaN where
  0.25 lies outside their deltas: no extrapolation).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from market.feeds.base import QUOTE
from market.greeks import bsm_greeks_arrays, implied_volatility_arrays, time_to_expiry

NS_PER_MINUTE = 60_000_000_000
GREEKS = ("delta", "gamma", "theta", "vega", "rho")


def contract_minutes(option_ticks: pl.DataFrame, chains: pl.DataFrame,
                     stock_ticks: pl.DataFrame, *, rate: float, dividend: float
                     ) -> pl.DataFrame:
    """Return one row per contract and minute with spot, mid, implied vol and Greeks."""
    def last_quotes(frame: pl.DataFrame, key: str) -> pl.DataFrame:
        return (frame.filter((pl.col("kind") == QUOTE) & (pl.col("bid") > 0)
                             & (pl.col("ask") >= pl.col("bid")))
                .with_columns((pl.col("ts_ns") // NS_PER_MINUTE * NS_PER_MINUTE)
                              .alias("minute_ns"),
                              ((pl.col("bid") + pl.col("ask")) / 2).alias("mid"))
                .sort("ts_ns").group_by(key, "minute_ns", maintain_order=True)
                .agg(pl.col("mid").last(), pl.col("symbol").last().alias("underlying")))

    options = last_quotes(option_ticks.filter(pl.col("contract").is_not_null()), "contract")
    spots = last_quotes(stock_ticks, "symbol").select(
        pl.col("symbol").alias("underlying"), "minute_ns", pl.col("mid").alias("spot"))
    definitions = (chains.select("contract", "expiration", "strike", "is_call")
                   .unique("contract", keep="last"))
    frame = (options.join(definitions, on="contract").join(spots, on=["underlying",
                                                                       "minute_ns"])
             .sort("underlying", "minute_ns", "contract"))
    if frame.height == 0:
        return frame
    minute_end = frame["minute_ns"].to_numpy() + NS_PER_MINUTE
    expiration = frame["expiration"].to_numpy().astype("datetime64[D]")
    years = np.empty(frame.height)
    for end in np.unique(minute_end):  # time_to_expiry takes one clock reading
        mask = minute_end == end
        years[mask] = time_to_expiry(expiration[mask], int(end))
    is_call = frame["is_call"].to_numpy().astype(np.bool_)
    spot = frame["spot"].to_numpy()
    strike = frame["strike"].to_numpy()
    vol = implied_volatility_arrays(is_call, frame["mid"].to_numpy(), spot, strike, years,
                                    np.asarray([rate]), np.asarray([dividend]))
    greeks = bsm_greeks_arrays(is_call, spot, strike, years, np.asarray([rate]),
                               np.asarray([dividend]), vol)
    return frame.with_columns(
        pl.Series("time_to_expiry", years), pl.Series("implied_volatility", vol),
        *(pl.Series(name, greeks[i + 1]) for i, name in enumerate(GREEKS)))


def _at_delta(delta: npt.NDArray[np.float64], vol: npt.NDArray[np.float64],
              target: float) -> float:
    ok = np.isfinite(delta) & np.isfinite(vol)
    if ok.sum() < 1:
        return float("nan")
    d, v = delta[ok], vol[ok]
    order = np.argsort(d)
    d, v = d[order], v[order]
    if not d[0] <= target <= d[-1]:
        return float("nan")
    return float(np.interp(target, d, v))


def expiry_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Return ATM implied vol and 25-delta skew per underlying, minute and expiration."""
    out: dict[str, list[object]] = {k: [] for k in ("underlying", "minute_ns", "expiration",
                                                    "spot", "atm_iv", "skew_25d")}
    for (underlying, minute, expiration), group in rows.group_by(
            "underlying", "minute_ns", "expiration", maintain_order=True):
        spot = float(group["spot"][0])
        strikes = group["strike"].to_numpy()
        vols = group["implied_volatility"].to_numpy()
        valid = np.isfinite(vols)
        atm = float("nan")
        if valid.any():
            nearest = strikes[valid][np.argmin(np.abs(strikes[valid] - spot))]
            atm = float(np.mean(vols[valid & (strikes == nearest)]))
        calls = group["is_call"].to_numpy().astype(np.bool_)
        delta = group["delta"].to_numpy()
        skew = (_at_delta(delta[~calls], vols[~calls], -0.25)
                - _at_delta(delta[calls], vols[calls], 0.25))
        for key, value in (("underlying", underlying), ("minute_ns", minute),
                           ("expiration", expiration), ("spot", spot), ("atm_iv", atm),
                           ("skew_25d", skew)):
            out[key].append(value)
    return pl.DataFrame(out, schema_overrides={"expiration": rows.schema["expiration"]}
                        ) if rows.height else pl.DataFrame()
