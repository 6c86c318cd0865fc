"""Fetch Alpaca's historical option bars as recordings for ``iv_surface --source alpaca``.

For each underlying and New York trading day in ``[start, end]``: the underlying's
1-minute bars (regular hours), the contracts listed then (``TradingClient
.get_option_contracts``, active and expired, expiring within ``chain_days``, strikes
within ``moneyness`` of the day's price range) and their 1-minute bars
(``OptionHistoricalDataClient.get_option_bars``; Alpaca has them from February 2024).
Each day is written as one recording session (``TickRecorder``'s layout, so the
surface code is the recordings path): a bar is a quote whose bid and ask are its close,
so an option's price is the last trade of the minute and spot the underlying's last
trade of the same minute. A session folder is renamed into place when complete, so a
rerun fetches only the days missing. Requests share one pacer
(:class:`market.feeds.alpaca_history.RequestPacer`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from core.errors import InvalidInput
from market.feeds.base import QUOTE
from market.research.backfill_plan import (
    bars_frame,
    clean_bars,
    day_is_over,
    ny_midnight,
    weekdays,
)
from pipelines import _jobs

if TYPE_CHECKING:
    from core.settings import Settings
    from market.feeds.alpaca_history import AlpacaHistory


def contracts_frame(listing: list[dict[str, Any]]) -> pl.DataFrame:
    """Return Alpaca's option-contract JSON as chain rows (contract, expiration, strike, ...)."""
    schema = {"underlying": pl.String, "contract": pl.String, "expiration": pl.Date,
              "strike": pl.Float64, "is_call": pl.Boolean}
    rows = [(c["underlying_symbol"], c["symbol"], date.fromisoformat(c["expiration_date"]),
             float(c["strike_price"]), c["type"] == "call") for c in listing]
    return pl.DataFrame(rows, schema=schema, orient="row").unique("contract").sort("contract")


def _quotes(bars: pl.DataFrame, name: str) -> pl.DataFrame:
    return bars.select(pl.col("timestamp").dt.epoch("ns").alias("ts_ns"),
                       pl.lit(QUOTE, pl.UInt8).alias("kind"), pl.col("symbol").alias(name),
                       pl.col("close").alias("price"), pl.col("close").alias("bid"),
                       pl.col("close").alias("ask"))


def fetch_day(history: AlpacaHistory, underlying: str, day: date, chain: pl.DataFrame, *,
              chain_days: int, moneyness: float
              ) -> tuple[dict[str, pl.DataFrame], Counter[str]]:
    """Return one day's recording tables for ``underlying`` and the bars dropped by reason."""
    start, end = ny_midnight(day), ny_midnight(day + timedelta(days=1))
    stock, dropped = clean_bars(bars_frame(history.stock_bars([underlying], start, end)),
                                start, end, days=[day], regular_hours=True)
    if stock.height == 0:
        return {}, dropped
    low, high = stock.select(pl.col("low").min(), pl.col("high").max()).row(0)
    listed = chain.filter(
        (pl.col("expiration") >= day) & (pl.col("expiration") <= day + timedelta(days=chain_days))
        & pl.col("strike").is_between(low * (1 - moneyness), high * (1 + moneyness)))
    raw = history.option_bars(listed["contract"].to_list(), start, end) if listed.height else {}
    options, option_dropped = clean_bars(bars_frame(raw), start, end, days=[day],
                                         regular_hours=True)
    dropped.update({f"option_{k}": v for k, v in option_dropped.items()})
    option_ticks = _quotes(options, "contract").join(
        listed.select("contract", pl.col("underlying").alias("symbol")), on="contract")
    return {"ticks": _quotes(stock, "symbol"), "option_ticks": option_ticks,
            "chains": listed.filter(pl.col("contract").is_in(options["symbol"].unique()))
            }, dropped


def fetch_inputs(root: str | Path, underlyings: list[str], start: date | str, end: date | str,
                 *, settings: Settings | None = None, chain_days: int = 45,
                 moneyness: float = 0.25, rate_limit: int = 200, window_s: float = 60.0
                 ) -> dict[str, Any]:
    """Write the missing (underlying, day) recording sessions under ``root``; return counts.

    Days not over yet in New York are left out (a session, once written, is final).
    """
    from core.settings import Settings
    from market.feeds.alpaca_history import AlpacaHistory, HistoryRequestError, RequestPacer

    names, first, last = _jobs.symbols_and_dates(underlyings, start, end)
    now = datetime.now(UTC)
    days = [d for d in weekdays(first, last) if day_is_over(d, now)]  # a session is final
    if not names or not days or chain_days < 0 or not 0 <= moneyness < 1:
        raise InvalidInput("need underlyings, a weekday, chain_days ≥ 0 and 0 ≤ moneyness < 1")
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    history = AlpacaHistory(settings or Settings(), pacer=RequestPacer(rate_limit, window_s))
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    errors: list[str] = []
    for underlying in names:
        todo = [d for d in days if not (folder / f"{underlying}-{d.isoformat()}").is_dir()]
        counts["sessions_present"] += len(days) - len(todo)
        if not todo:
            continue
        try:
            chain = contracts_frame(history.option_contracts(
                underlying, todo[0], todo[-1] + timedelta(days=chain_days)))
            for day in todo:
                tables, lost = fetch_day(history, underlying, day, chain,
                                         chain_days=chain_days, moneyness=moneyness)
                dropped.update(lost)
                _write_session(folder / f"{underlying}-{day.isoformat()}", tables)
                counts["sessions_fetched"] += 1
                counts["option_bars"] += tables["option_ticks"].height if tables else 0
        except HistoryRequestError as exc:
            if exc.refused_credentials:
                raise InvalidInput(f"Alpaca refused the credentials: {exc.message}") from exc
            errors.append(f"{underlying}: {exc.message}")
    return {**counts, "bars_dropped": dict(sorted(dropped.items())), "errors": errors,
            "http": {**history.stats.as_dict(), "pacer_wait_s": history.pacer.waited_s}}


def _write_session(target: Path, tables: dict[str, pl.DataFrame]) -> None:
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        for kind in ("ticks", "option_ticks", "chains"):
            (staging / kind).mkdir(parents=True)
            if kind in tables and tables[kind].height:
                tables[kind].write_parquet(staging / kind / "part-000000.parquet")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
