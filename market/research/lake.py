"""The research history lake: one Parquet file per symbol and year, and simulated bars for it.

Layout::

    root/symbol=<S>/year=<Y>/bars.parquet     columns symbol, timestamp (ns UTC), OHLCV

sorted by time, in row groups of one week of minute bars, so a year of one symbol is one
file and a day of the universe reads one small row group per symbol (Parquet statistics
skip the rest). ``market.research.data`` reads this layout and the live
``HistoryStore``'s ``date=/symbol=`` one; :func:`compact_history` turns the latter into
the former. Files are written whole (a temporary name renamed on a disk, one put on an
object store), so a file that exists is complete (what resumable backfills rely on).
``root`` may be a path, a shared volume or an object store (a URI or a
:class:`core.storage.Storage`), for the writers here and for ``market.research.data``'s
readers.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from core.storage import Storage
from market.feeds.sim_calendar import (
    SESSION_MINUTES,
    TRADING_SECONDS_PER_YEAR,
    is_trading_day,
    session_bounds_ns,
    volume_profile,
)
from market.feeds.sim_process import draw_params, step

ROW_GROUP_ROWS = SESSION_MINUTES * 5
NS_PER_MINUTE = 60_000_000_000
OVERNIGHT_DAYS = 0.2  # as the live simulator: overnight variance, in trading days
SHARES_PER_MINUTE = 40_000.0
CHUNK_SYMBOLS = 50  # symbols simulated together; part of what a seed means (one market factor)


def bars_path(root: Path, symbol: str, year: int) -> Path:
    """Return where the bars of ``symbol`` in ``year`` live under ``root``."""
    return root / bars_key(symbol, year)


def bars_key(symbol: str, year: int) -> str:
    """Return the file of ``symbol`` in ``year`` relative to the lake's root."""
    return f"symbol={symbol}/year={year}/bars.parquet"


def lake_storage(root: Path | str | Storage) -> Storage:
    """Return the lake at ``root`` (a path, a URI or a Storage) as a Storage."""
    return root if isinstance(root, Storage) else Storage(root)


def bars_exist(root: Path | str | Storage, symbol: str, year: int) -> bool:
    """Return whether the lake holds a (complete) file of ``symbol`` in ``year``."""
    return lake_storage(root).exists(bars_key(symbol, year))


def read_symbol_year(root: Path | str | Storage, symbol: str, year: int) -> pl.DataFrame | None:
    """Return the bars of ``symbol`` in ``year`` as stored, ``None`` when there are none."""
    storage = lake_storage(root)
    try:
        with storage.open_input(bars_key(symbol, year)) as source:
            return pl.read_parquet(source)
    except FileNotFoundError:
        return None


def write_bars(root: Path | str | Storage, frame: pl.DataFrame) -> list[Path]:
    """Write contract-column bars into their symbol/year files atomically; return the files.

    Bars of a symbol-year already stored are merged, the new bar winning for a minute
    written twice. The files are paths on disk for a local ``root``, else paths relative
    to ``root`` (see :func:`bars_key`).
    """
    storage = lake_storage(root)
    written = []
    frame = frame.with_columns(pl.col("timestamp").dt.year().alias("_year"))
    for (symbol, year), part in frame.partition_by("symbol", "_year", as_dict=True).items():
        key = bars_key(str(symbol), int(str(year)))
        part = part.drop("_year")
        stored = read_symbol_year(storage, str(symbol), int(str(year)))
        if stored is not None:
            part = pl.concat([stored, part])
        part = part.unique("timestamp", keep="last").sort("timestamp")
        buffer = io.BytesIO()
        part.write_parquet(buffer, row_group_size=ROW_GROUP_ROWS, statistics=True)
        storage.write_bytes(key, buffer.getbuffer())
        written.append(storage.local_path(key) if storage.is_local else Path(key))
    return written


def trading_days(start: date, end: date) -> list[date]:
    """Return the simulator's trading days (weekdays) from ``start`` to ``end`` inclusive."""
    days = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def sessions_ending(end: date, count: int) -> list[date]:
    """Return the last ``count`` trading days up to ``end``."""
    days: list[date] = []
    day = end
    while len(days) < count:
        if is_trading_day(day):
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def universe(count: int) -> list[str]:
    """Return ``count`` ticker-like names: ``S0000``, ``S0001``, ... (deterministic)."""
    return [f"S{i:04d}" for i in range(count)]


def _cents(log_price: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.round(np.exp(log_price), 2), np.float64)


def simulate_bars(symbols: Sequence[str], days: Iterable[date], seed: int,
                  chunk: int) -> pl.DataFrame:
    """Return 1-minute session bars of ``symbols`` on ``days`` from the live simulator's process.

    Deterministic in (symbols, days, seed, chunk): the draws come from ``[seed, chunk]``;
    prices in cents, highs and lows drawn from the Brownian bridge of each minute.
    """
    params = draw_params(symbols, seed)
    rng = np.random.default_rng([seed, 3, chunk])
    log_spot = np.log(params.spot)
    variance = params.variance.copy()
    n = len(symbols)
    activity = volume_profile((np.arange(SESSION_MINUTES) + 0.5) / SESSION_MINUTES)
    dts = 60.0 * (0.5 + 0.5 * activity) / TRADING_SECONDS_PER_YEAR
    frames = []
    for index, day in enumerate(days):
        if index:
            step(params, log_spot, variance, OVERNIGHT_DAYS / 252, rng)
        opens = np.empty((SESSION_MINUTES, n))
        closes = np.empty((SESSION_MINUTES, n))
        diffusion = np.empty((SESSION_MINUTES, n))
        for minute in range(SESSION_MINUTES):
            opens[minute] = log_spot
            moved = step(params, log_spot, variance, float(dts[minute]), rng)
            closes[minute] = log_spot
            diffusion[minute] = moved.diffusion_std
        gap = (closes - opens) ** 2
        spread = -2.0 * diffusion**2 * np.log(rng.random((2, SESSION_MINUTES, n)))
        high = (opens + closes + np.sqrt(gap + spread[0])) / 2.0
        low = (opens + closes - np.sqrt(gap + spread[1])) / 2.0
        volume = np.round(SHARES_PER_MINUTE * activity[:, None] * params.activity[None, :] * n
                          * rng.lognormal(-0.06, 0.35, (SESSION_MINUTES, n)) / 100.0) * 100.0
        start = session_bounds_ns(day)[0]
        stamps = start + np.arange(SESSION_MINUTES, dtype=np.int64) * NS_PER_MINUTE
        frames.append(pl.DataFrame({
            "symbol": pl.Series(list(symbols), dtype=pl.String).gather(
                np.repeat(np.arange(n), SESSION_MINUTES)),
            "timestamp": np.tile(stamps, n),
            # symbol-major: each symbol's minutes together
            "open": _cents(opens.T.ravel()), "high": _cents(high.T.ravel()),
            "low": _cents(low.T.ravel()), "close": _cents(closes.T.ravel()),
            "volume": np.maximum(volume.T.ravel(), 100.0),
        }))
    frame = pl.concat(frames).with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC")))
    # the cent rounding can put open/close outside the rounded high/low by a cent
    return frame.with_columns(
        pl.max_horizontal("high", "open", "close").alias("high"),
        pl.min_horizontal("low", "open", "close").alias("low")).sort("symbol", "timestamp")


def compact_history(history_root: Path, lake_root: Path | str | Storage) -> int:
    """Copy a ``HistoryStore`` (``date=/symbol=``) on a path into the lake layout (any
    root); return bars written."""
    from market.research.data import list_symbols, load_bars

    total = 0
    for symbol in list_symbols(history_root):
        for item in load_bars(history_root, [symbol]):
            frame = pl.DataFrame({
                "symbol": [symbol] * len(item.bars),
                "timestamp": pl.Series(item.timestamp_ns).cast(pl.Datetime("ns", "UTC")),
                "open": item.bars.open, "high": item.bars.high, "low": item.bars.low,
                "close": item.bars.close, "volume": item.bars.volume})
            write_bars(lake_root, frame)
            total += frame.height
    return total
