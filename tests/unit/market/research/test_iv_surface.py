"""IV surface from quotes priced by vollib at known volatilities: recovered, ATM, 25-delta skew."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy.optimize import brentq
from vollib.black_scholes_merton import black_scholes_merton as vollib_price
from vollib.black_scholes_merton.greeks.analytical import delta as vollib_delta

from market.feeds.base import QUOTE
from market.greeks import bsm_greeks, implied_volatility, time_to_expiry
from market.research.iv_surface import GREEKS, contract_minutes, expiry_summary
from pipelines.iv_surface import run

MINUTE = 1_795_500_000 * 1_000_000_000  # a weekday afternoon, UTC
EXPIRY = date(2026, 12, 18)
SPOT, RATE = 100.0, 0.04


def _vol(strike: float) -> float:
    return 0.20 - 0.3 * (strike / SPOT - 1.0)  # a put skew


def _tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    strikes = np.arange(85.0, 116.0, 2.5)  # where the price pins sigma down
    years = float(time_to_expiry(np.asarray([EXPIRY], "datetime64[D]"), MINUTE + 60 * 10**9)[0])
    rows, chain = [], []
    for strike in strikes:
        for flag in ("c", "p"):
            name = f"XYZ{'C' if flag == 'c' else 'P'}{strike:08.1f}"
            price = vollib_price(flag, SPOT, strike, years, RATE, _vol(strike), 0.0)
            rows.append({"symbol": "XYZ", "contract": name, "kind": QUOTE,
                         "ts_ns": MINUTE + 5 * 10**9, "bid": price, "ask": price})
            chain.append({"contract": name, "expiration": EXPIRY, "strike": strike,
                          "is_call": flag == "c"})
    stock = pl.DataFrame({"symbol": ["XYZ", "XYZ"], "kind": [QUOTE, QUOTE],
                          "ts_ns": [MINUTE + 1, MINUTE + 2], "bid": [99.0, SPOT - 0.01],
                          "ask": [101.0, SPOT + 0.01]})
    return pl.DataFrame(rows), pl.DataFrame(chain), stock


def test_recovers_vollib_prices_volatility_and_delta() -> None:
    rows = contract_minutes(*_tables(), rate=RATE, dividend=0.0)
    assert rows.height == 2 * 13
    assert rows["spot"].unique().to_list() == [SPOT]  # the minute's last quote
    expected = np.asarray([_vol(k) for k in rows["strike"]])
    np.testing.assert_allclose(rows["implied_volatility"].to_numpy(), expected, atol=1e-6)
    years = rows["time_to_expiry"].to_numpy()
    flags = ["c" if c else "p" for c in rows["is_call"]]
    deltas = [vollib_delta(f, SPOT, k, t, RATE, v, 0.0) for f, k, t, v in
              zip(flags, rows["strike"], years, expected, strict=True)]
    np.testing.assert_allclose(rows["delta"].to_numpy(), deltas, atol=1e-6)


def test_atm_and_25_delta_skew_follow_the_documented_conventions() -> None:
    rows = contract_minutes(*_tables(), rate=RATE, dividend=0.0)
    (summary,) = expiry_summary(rows).iter_rows(named=True)
    assert summary["atm_iv"] == pytest.approx(_vol(100.0), abs=1e-6)
    puts = rows.filter(~pl.col("is_call")).sort("delta")
    calls = rows.filter(pl.col("is_call")).sort("delta")
    put_vol = np.interp(-0.25, puts["delta"].to_numpy(), puts["implied_volatility"].to_numpy())
    call_vol = np.interp(0.25, calls["delta"].to_numpy(), calls["implied_volatility"].to_numpy())
    assert summary["skew_25d"] == pytest.approx(put_vol - call_vol, abs=1e-12)
    # independently: the strikes where vollib's delta is -0.25 / 0.25 on the priced smile
    years = float(rows["time_to_expiry"][0])

    def strike_at(flag: str, target: float) -> float:
        return float(brentq(lambda k: vollib_delta(flag, SPOT, k, years, RATE, _vol(k), 0.0)
                            - target, 60.0, 160.0))

    exact = _vol(strike_at("p", -0.25)) - _vol(strike_at("c", 0.25))
    assert summary["skew_25d"] == pytest.approx(exact, abs=2e-3)  # linear-in-delta error
    assert summary["skew_25d"] > 0  # the put wing is richer, as priced


def test_job_reads_a_recording_layout(tmp_path: Path) -> None:
    options, chains, stock = _tables()
    for kind, frame in (("option_ticks", options), ("chains", chains), ("ticks", stock)):
        (tmp_path / "rec" / "s1" / kind).mkdir(parents=True)
        frame.write_parquet(tmp_path / "rec" / "s1" / kind / "part-000000.parquet")
    contracts, expiries, manifest = run(tmp_path / "rec", tmp_path / "out", rate=RATE,
                                        use_ray=False)
    assert contracts.height == 26
    assert expiries.height == 1
    assert pl.read_parquet(tmp_path / "out" / "expiries.parquet").height == 1
    assert manifest["config"]["sessions"] == 1


def _reference_contract_minutes(option_ticks: pl.DataFrame, chains: pl.DataFrame,
                                stock_ticks: pl.DataFrame, *, rate: float) -> pl.DataFrame:
    """The former per-minute path: filter each minute's rows, one kernel call per minute."""
    base = contract_minutes(option_ticks, chains, stock_ticks, rate=rate, dividend=0.0)
    base = base.sample(fraction=1.0, shuffle=True, seed=0).sort(  # the order, independently
        "underlying", "minute_ns", "contract")
    parts = []
    for (_, minute), part in base.group_by("underlying", "minute_ns", maintain_order=True):
        end = int(minute) + 60 * 10**9  # type: ignore[call-overload]
        years = time_to_expiry(part["expiration"].to_numpy().astype("datetime64[D]"), end)
        flags = np.where(part["is_call"].to_numpy(), "c", "p")
        vol = implied_volatility(part["mid"].to_numpy(), part["spot"].to_numpy(),
                                 part["strike"].to_numpy(), years, rate, 0.0, flags)
        greeks = bsm_greeks(flags, part["spot"].to_numpy(), part["strike"].to_numpy(), years,
                            rate, 0.0, vol)
        parts.append(part.with_columns(
            pl.Series("time_to_expiry", years), pl.Series("implied_volatility", vol),
            *(pl.Series(name, greeks[name]) for name in GREEKS)))
    return pl.concat(parts)


def _reference_at_delta(delta: np.ndarray, vol: np.ndarray, target: float) -> float:
    ok = np.isfinite(delta) & np.isfinite(vol)
    if ok.sum() < 1:
        return float("nan")
    d, v = delta[ok], vol[ok]
    order = np.argsort(d)
    d, v = d[order], v[order]
    if not d[0] <= target <= d[-1]:
        return float("nan")
    return float(np.interp(target, d, v))


def _reference_expiry_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """The former Python loop over (underlying, minute, expiration) groups."""
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
        skew = (_reference_at_delta(delta[~calls], vols[~calls], -0.25)
                - _reference_at_delta(delta[calls], vols[calls], 0.25))
        for key, value in (("underlying", underlying), ("minute_ns", minute),
                           ("expiration", expiration), ("spot", spot), ("atm_iv", atm),
                           ("skew_25d", skew)):
            out[key].append(value)
    return pl.DataFrame(out, schema_overrides={"expiration": rows.schema["expiration"],
                                               "minute_ns": rows.schema["minute_ns"]})


def _messy_tables(seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Two underlyings, four expiries (one expiring inside the minutes), gaps, bad quotes."""
    rng = np.random.default_rng(seed)
    expiries = [date(2026, 11, 23), date(2026, 11, 27), date(2026, 12, 18), date(2027, 3, 19)]
    start = 1_795_500_000 * 10**9 // (60 * 10**9) * 60 * 10**9
    options, chain, stock = [], [], []
    for underlying, level in (("AAA", 100.0), ("BBB", 42.0)):
        strikes = np.round(level * np.arange(0.8, 1.21, 0.05), 1)
        for minute in range(12):
            now = start + minute * 60 * 10**9
            spot = float(strikes[4] if minute == 3 else level * (1 + 0.01 * rng.normal()))
            for offset in sorted(rng.integers(1, 59, 2)):
                stock.append({"symbol": underlying, "contract": None, "kind": QUOTE,
                              "ts_ns": now + int(offset) * 10**9, "bid": spot - 0.01,
                              "ask": spot + 0.01})
            for expiry in expiries:
                years = time_to_expiry(np.asarray([expiry], "datetime64[D]"),
                                       now + 60 * 10**9)
                for strike in strikes:
                    for flag in ("c", "p"):
                        if rng.random() < 0.15:  # no quote this minute
                            continue
                        sigma = 0.25 - 0.4 * (strike / level - 1) + 0.02 * rng.normal()
                        price = float(bsm_greeks(flag, spot, strike, years, 0.03, 0.0,
                                                 sigma)["price"][0])
                        if rng.random() < 0.05:
                            price *= 0.2  # below intrinsic for deep ones: no vol
                        name = f"{underlying}{expiry:%y%m%d}{flag.upper()}{strike:08.1f}"
                        for tick in range(2):
                            spread = max(price * 0.01, 0.005)
                            options.append({"symbol": underlying, "contract": name,
                                            "kind": QUOTE,
                                            "ts_ns": now + (10 + 30 * tick) * 10**9,
                                            "bid": price - spread * (tick + rng.random()),
                                            "ask": price + spread * (tick + rng.random())})
                        chain.append({"contract": name, "expiration": expiry,
                                      "strike": float(strike), "is_call": flag == "c"})
    return (pl.DataFrame(options), pl.DataFrame(chain).unique(maintain_order=True),
            pl.DataFrame(stock))


@pytest.mark.parametrize("seed", [1, 2])
def test_vectorised_path_equals_the_per_minute_path_exactly(seed: int) -> None:
    tables = _messy_tables(seed)
    rows = contract_minutes(*tables, rate=0.03, dividend=0.0)
    expected_rows = _reference_contract_minutes(*tables, rate=0.03)
    assert rows.height > 800
    assert rows["implied_volatility"].is_nan().sum() > 0  # the bad quotes and the expired
    assert_frame_equal(rows, expected_rows)  # exact: same kernels, same inputs
    summary = expiry_summary(rows)
    expected = _reference_expiry_summary(rows)
    assert summary.height == 2 * 12 * 4
    assert summary["skew_25d"].is_nan().sum() < summary.height  # not all degenerate
    assert_frame_equal(summary, expected)
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed)  # any row order
    assert_frame_equal(expiry_summary(shuffled), _reference_expiry_summary(shuffled))
