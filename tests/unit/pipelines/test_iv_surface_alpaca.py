"""Alpaca option and stock bars turned into one day's recording tables (no server)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from market.feeds.base import QUOTE
from pipelines.iv_surface_alpaca import _write_session, contracts_frame, fetch_day

DAY = date(2025, 6, 2)
OPEN = datetime(2025, 6, 2, 13, 30, tzinfo=UTC)  # 09:30 New York


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _listing(strike: float, expiration: date, kind: str) -> dict[str, str]:
    occ = f"XYZ{expiration:%y%m%d}{kind[0].upper()}{round(strike * 1000):08d}"
    return {"symbol": occ, "underlying_symbol": "XYZ", "expiration_date": expiration.isoformat(),
            "strike_price": f"{strike}", "type": kind}


class History:
    """What AlpacaHistory returns, from tables; records the contracts asked for."""

    def __init__(self, stock: list[float]) -> None:
        self.stock = stock
        self.asked: list[str] = []

    def stock_bars(self, symbols, start, end):
        return {"XYZ": [{"t": _iso(OPEN + timedelta(minutes=i)), "o": p, "h": p + 0.5,
                         "l": p - 0.5, "c": p, "v": 100} for i, p in enumerate(self.stock)]}

    def option_bars(self, contracts, start, end):
        self.asked += contracts
        return {c: [{"t": _iso(OPEN + timedelta(minutes=1)), "o": 2.0, "h": 2.1, "l": 1.9,
                     "c": 2.05, "v": 3}] for c in contracts[:-1]}  # the last one never traded


def test_contracts_frame_reads_alpacas_listing():
    frame = contracts_frame([_listing(100.0, DAY, "call"), _listing(95.5, DAY, "put"),
                             _listing(100.0, DAY, "call")])

    assert frame.height == 2
    assert frame.filter(pl.col("strike") == 95.5)["is_call"].to_list() == [False]
    assert frame.schema["expiration"] == pl.Date


def test_fetch_day_asks_for_near_contracts_and_prices_bars_as_quotes():
    soon, late = DAY + timedelta(days=4), DAY + timedelta(days=60)
    chain = contracts_frame([_listing(k, e, t) for k in (60.0, 100.0, 105.0, 140.0)
                             for e in (soon, late) for t in ("call", "put")]
                            + [_listing(100.0, DAY - timedelta(days=3), "call")])  # expired
    history = History([100.0, 101.0, 102.0])

    tables, dropped = fetch_day(history, "XYZ", DAY, chain, chain_days=30, moneyness=0.1)

    # strikes within 10% of the day's range 99.5-102.5, expiring within 30 days
    asked = chain.filter(pl.col("contract").is_in(history.asked))
    assert sorted(set(asked["strike"])) == [100.0, 105.0]
    assert set(asked["expiration"]) == {soon}
    assert tables["option_ticks"].height == len(history.asked) - 1
    assert tables["chains"].height == len(history.asked) - 1  # only contracts with bars
    ticks = tables["option_ticks"]
    assert set(ticks["kind"]) == {QUOTE}
    assert (ticks["bid"] == 2.05).all()
    assert (ticks["ask"] == 2.05).all()
    assert set(ticks["symbol"]) == {"XYZ"}
    spot = tables["ticks"]
    assert spot["bid"].to_list() == [100.0, 101.0, 102.0]
    assert spot["ts_ns"][0] == int(OPEN.timestamp()) * 10**9
    assert dropped == {}


def test_fetch_day_without_stock_bars_asks_for_no_option():
    history = History([])

    tables, _ = fetch_day(history, "XYZ", DAY, contracts_frame([_listing(100.0, DAY, "call")]),
                          chain_days=30, moneyness=0.1)

    assert tables == {}
    assert history.asked == []


def test_write_session_leaves_the_whole_folder_or_nothing(tmp_path: Path):
    target = tmp_path / "XYZ-2025-06-02"
    table = pl.DataFrame({"ts_ns": [1], "kind": [QUOTE]})

    _write_session(target, {"ticks": table})

    assert pl.read_parquet(target / "ticks" / "part-000000.parquet").equals(table)
    assert (target / "option_ticks").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["XYZ-2025-06-02"]  # no staging left
    with pytest.raises(AttributeError):
        _write_session(tmp_path / "broken", {"ticks": "not a frame"})  # type: ignore[dict-item]
    assert [p.name for p in tmp_path.iterdir()] == ["XYZ-2025-06-02"]
