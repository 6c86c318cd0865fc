"""Option-chain analytics over flat arrays (one row per contract).

Inputs are the chain's columns: ``is_call`` (bool), ``strike``, ``expiration``
(``datetime64[D]``), ``volume`` (today's contracts traded), ``open_interest``,
``implied_volatility`` (annual, NaN where unknown), ``delta``, ``gamma`` (per 1 of
the underlying, as in :mod:`market.greeks`) and ``underlying_price``.

Conventions:

* Ratios are put / call (volume and open interest); None when the call side is 0.
* ATM IV per expiry: the IV at the underlying price, linearly interpolated across
  strikes (call and put IVs of a strike averaged), flat beyond the listed strikes.
* 25-delta skew per expiry: IV of the -0.25-delta put minus IV of the +0.25-delta
  call, each interpolated in delta (no extrapolation); positive = puts richer.
* Max pain per expiry: the listed strike at which the options' total intrinsic
  value at expiry (what holders would receive) is smallest.
* Exposures use the contract multiplier (100 shares). Gamma exposure (GEX) is
  dollar gamma per 1% move, ``gamma * OI * 100 * S^2 * 0.01``, counted + for
  calls and - for puts (the usual assumption that dealers are long the calls and
  short the puts the public holds). Delta exposure (DEX) is dollar delta held by
  option buyers, ``delta * OI * 100 * S`` (puts negative through their delta).
* Unusual activity: volume at least ``min_volume`` and above ``oi_ratio`` times the
  open interest, or (with a per-contract volume history) more than ``z_threshold``
  standard deviations above the contract's own mean daily volume.

:func:`chain_summary` bundles all of it as JSON-able data (None, never NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
MULTIPLIER = 100.0


def _f(x: Any) -> float | None:
    """A JSON-able float: None for NaN/inf/None."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _arr(x: npt.ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def put_call_ratios(is_call: npt.ArrayLike, volume: npt.ArrayLike,
                    open_interest: npt.ArrayLike) -> dict[str, float | None]:
    """Put/call volume and open-interest ratios with the totals behind them."""
    calls = np.asarray(is_call, dtype=bool)
    vol = np.nan_to_num(_arr(volume))
    oi = np.nan_to_num(_arr(open_interest))
    cv, pv = float(vol[calls].sum()), float(vol[~calls].sum())
    co, po = float(oi[calls].sum()), float(oi[~calls].sum())
    return {
        "call_volume": cv, "put_volume": pv, "call_open_interest": co, "put_open_interest": po,
        "volume_ratio": pv / cv if cv > 0 else None,
        "open_interest_ratio": po / co if co > 0 else None,
    }


def _expiry_groups(expiration: npt.ArrayLike) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp]]:
    exp = np.asarray(expiration).astype("datetime64[D]")
    return np.unique(exp, return_inverse=True)


def atm_implied_volatility(strike: npt.ArrayLike, implied_volatility: npt.ArrayLike,
                           underlying_price: float) -> float:
    """IV at the underlying price for one expiry (NaN when no IV is known)."""
    k = _arr(strike)
    iv = _arr(implied_volatility)
    ok = np.isfinite(iv) & np.isfinite(k) & (iv > 0)
    if not ok.any():
        return math.nan
    strikes, inverse = np.unique(k[ok], return_inverse=True)
    mean_iv = np.bincount(inverse, iv[ok]) / np.bincount(inverse)
    return float(np.interp(underlying_price, strikes, mean_iv))


def expected_move(underlying_price: float, atm_iv: float, days: float,
                  days_per_year: float = 365.0) -> float:
    """One-standard-deviation move to an expiry implied by its ATM IV, in price units.

    ``spot * iv * sqrt(days / days_per_year)`` (calendar days; NaN for a negative
    horizon). About 1.25 times the at-the-money straddle's price, which is
    ``spot * iv * sqrt(T) * sqrt(2 / pi)`` to first order.
    """
    if days < 0 or not (math.isfinite(underlying_price) and math.isfinite(atm_iv)):
        return math.nan
    return float(underlying_price * atm_iv * math.sqrt(days / days_per_year))


def delta_skew(is_call: npt.ArrayLike, delta: npt.ArrayLike,
               implied_volatility: npt.ArrayLike, target: float = 0.25) -> dict[str, float | None]:
    """Put and call IV at +-``target`` delta for one expiry, and put minus call."""
    calls = np.asarray(is_call, dtype=bool)
    d, iv = _arr(delta), _arr(implied_volatility)
    ok = np.isfinite(d) & np.isfinite(iv) & (iv > 0)

    def at(mask: npt.NDArray[np.bool_], x: float) -> float | None:
        dd, vv = d[mask & ok], iv[mask & ok]
        if dd.size < 2 or not (dd.min() <= x <= dd.max()):
            return None
        order = np.argsort(dd)
        return float(np.interp(x, dd[order], vv[order]))

    put_iv, call_iv = at(~calls, -target), at(calls, target)
    skew = put_iv - call_iv if put_iv is not None and call_iv is not None else None
    return {"put_iv": put_iv, "call_iv": call_iv, "skew": skew}


def max_pain(strike: npt.ArrayLike, is_call: npt.ArrayLike,
             open_interest: npt.ArrayLike) -> dict[str, float | None]:
    """Strike minimising the holders' total payout at expiry (one expiry's contracts).

    ``payout`` is in dollars (multiplier 100) at that strike.
    """
    k = _arr(strike)
    calls = np.asarray(is_call, dtype=bool)
    oi = np.nan_to_num(_arr(open_interest))
    if k.size == 0 or oi.sum() <= 0:
        return {"strike": None, "payout": None}
    candidates = np.unique(k)
    settle = candidates[:, None]
    pay = np.where(calls, np.maximum(settle - k, 0.0), np.maximum(k - settle, 0.0)) @ oi
    j = int(np.argmin(pay))
    return {"strike": float(candidates[j]), "payout": float(pay[j] * MULTIPLIER)}


def exposure_by_strike(strike: npt.ArrayLike, is_call: npt.ArrayLike, gamma: npt.ArrayLike,
                       delta: npt.ArrayLike, open_interest: npt.ArrayLike,
                       underlying_price: float) -> dict[str, Any]:
    """Gamma and delta exposure per strike (all expiries) and in total; see the module."""
    k = _arr(strike)
    calls = np.asarray(is_call, dtype=bool)
    oi = np.nan_to_num(_arr(open_interest))
    s = float(underlying_price)
    gex = np.nan_to_num(_arr(gamma)) * oi * MULTIPLIER * s * s * 0.01 * np.where(calls, 1, -1)
    dex = np.nan_to_num(_arr(delta)) * oi * MULTIPLIER * s
    strikes, inverse = np.unique(k, return_inverse=True)
    gex_k = np.bincount(inverse, gex, minlength=strikes.size)
    dex_k = np.bincount(inverse, dex, minlength=strikes.size)
    return {
        "strikes": strikes.tolist(), "gamma_exposure": gex_k.tolist(),
        "delta_exposure": dex_k.tolist(),
        "total_gamma_exposure": float(gex.sum()), "total_delta_exposure": float(dex.sum()),
        "call_gamma_exposure": float(gex[calls].sum()),
        "put_gamma_exposure": float(gex[~calls].sum()),
    }


def open_interest_change(open_interest: npt.ArrayLike,
                         previous_open_interest: npt.ArrayLike) -> F64:
    """Per-contract change in open interest since the previous snapshot (NaN if unknown)."""
    return _arr(open_interest) - _arr(previous_open_interest)


def unusual_activity(volume: npt.ArrayLike, open_interest: npt.ArrayLike,
                     volume_history: npt.ArrayLike | None = None, min_volume: float = 100.0,
                     oi_ratio: float = 1.0, z_threshold: float = 3.0) -> npt.NDArray[np.bool_]:
    """Flag contracts whose volume is unusual vs their open interest or their own history.

    ``volume_history`` is ``(n_contracts, n_days)`` of past daily volumes (NaN
    where missing); at least 5 days are needed for the history test.
    """
    vol = np.nan_to_num(_arr(volume))
    oi = np.nan_to_num(_arr(open_interest))
    flags = (vol >= min_volume) & (vol > oi_ratio * oi)
    if volume_history is not None:
        hist = _arr(volume_history)
        count = np.sum(np.isfinite(hist), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nanmean(np.where(count[:, None] > 0, hist, 0.0), axis=1)
            std = np.nanstd(np.where(count[:, None] > 0, hist, 0.0), axis=1)
            z = (vol - mean) / np.maximum(std, 1.0)
        flags |= (vol >= min_volume) & (count >= 5) & (z > z_threshold)
    return flags


def chain_summary(is_call: npt.ArrayLike, strike: npt.ArrayLike, expiration: npt.ArrayLike,
                  volume: npt.ArrayLike, open_interest: npt.ArrayLike,
                  implied_volatility: npt.ArrayLike, delta: npt.ArrayLike,
                  gamma: npt.ArrayLike, underlying_price: float,
                  previous_open_interest: npt.ArrayLike | None = None,
                  volume_history: npt.ArrayLike | None = None, as_of_ns: int | None = None,
                  top: int = 10, **_: Any) -> dict[str, Any]:
    """Everything above for one underlying's chain, JSON-able (None instead of NaN).

    Extra keyword arguments (e.g. ``price``, ``time_to_expiry``) are accepted and
    ignored so a chain's column dict can be passed as is.
    """
    calls = np.asarray(is_call, dtype=bool)
    k, vol, oi = _arr(strike), np.nan_to_num(_arr(volume)), np.nan_to_num(_arr(open_interest))
    iv, d, g = _arr(implied_volatility), _arr(delta), _arr(gamma)
    spot = float(underlying_price)
    expiries, group = _expiry_groups(expiration) if k.size else (np.array([], "datetime64[D]"),
                                                                 np.array([], np.intp))
    as_of_day = (np.datetime64(int(as_of_ns), "ns").astype("datetime64[D]")
                 if as_of_ns else None)
    per_expiry = []
    for e, day in enumerate(expiries):
        m = group == e
        skew = delta_skew(calls[m], d[m], iv[m])
        pain = max_pain(k[m], calls[m], oi[m])
        per_expiry.append({
            "expiration": str(day),
            "days_to_expiry": (int((day - as_of_day).astype(int)) if as_of_day is not None
                               else None),
            "contracts": int(m.sum()),
            "volume": float(vol[m].sum()), "open_interest": float(oi[m].sum()),
            "atm_iv": _f(atm_implied_volatility(k[m], iv[m], spot)),
            "skew_25d": skew["skew"], "put_iv_25d": skew["put_iv"], "call_iv_25d": skew["call_iv"],
            "max_pain": pain["strike"],
        })
    exposure = exposure_by_strike(k, calls, g, d, oi, spot)
    result: dict[str, Any] = {
        "underlying_price": _f(spot),
        "contracts": int(k.size),
        "put_call": put_call_ratios(calls, vol, oi),
        "term_structure": per_expiry,
        "exposure": {
            "multiplier": MULTIPLIER,
            "total_gamma_exposure": _f(exposure["total_gamma_exposure"]),
            "call_gamma_exposure": _f(exposure["call_gamma_exposure"]),
            "put_gamma_exposure": _f(exposure["put_gamma_exposure"]),
            "total_delta_exposure": _f(exposure["total_delta_exposure"]),
            "by_strike": [
                {"strike": s, "gamma_exposure": _f(ge), "delta_exposure": _f(de)}
                for s, ge, de in zip(exposure["strikes"], exposure["gamma_exposure"],
                                     exposure["delta_exposure"], strict=True)
            ],
        },
    }

    def describe(rows: npt.NDArray[np.intp], extra: dict[str, F64]) -> list[dict[str, Any]]:
        exp_text = np.asarray(expiration).astype("datetime64[D]").astype(str)
        return [{"type": "call" if calls[i] else "put", "strike": float(k[i]),
                 "expiration": str(exp_text[i]), "volume": float(vol[i]),
                 "open_interest": float(oi[i]), "implied_volatility": _f(iv[i]),
                 **{name: _f(values[i]) for name, values in extra.items()}} for i in rows]

    if previous_open_interest is not None and k.size:
        change = open_interest_change(oi, previous_open_interest)
        known = np.isfinite(change)
        order = np.argsort(-np.abs(np.where(known, change, 0.0)), kind="stable")[:top]
        order = order[known[order] & (change[order] != 0)]
        result["open_interest_change"] = {
            "total": float(change[known].sum()) if known.any() else None,
            "calls": float(change[known & calls].sum()) if known.any() else None,
            "puts": float(change[known & ~calls].sum()) if known.any() else None,
            "largest": describe(order, {"change": change}),
        }
    flags = unusual_activity(vol, oi, volume_history) if k.size else np.zeros(0, bool)
    ratio = np.where(oi > 0, vol / np.maximum(oi, 1e-300), np.inf)
    rows = np.flatnonzero(flags)
    rows = rows[np.argsort(-vol[rows], kind="stable")][:top]
    result["unusual_activity"] = describe(rows, {"volume_oi_ratio": ratio})
    return result
