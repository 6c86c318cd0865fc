"""IV surface from quotes priced by vollib at known volatilities: recovered, ATM, 25-delta skew."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.optimize import brentq
from vollib.black_scholes_merton import black_scholes_merton as vollib_price
from vollib.black_scholes_merton.greeks.analytical import delta as vollib_delta

from market.feeds.base import QUOTE
from market.greeks import time_to_expiry
from market.research.iv_surface import contract_minutes, expiry_summary
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
