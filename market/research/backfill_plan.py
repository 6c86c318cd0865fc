"""What an API backfill of the lake fetches, what it keeps, and what it has done.

The unit of completeness is one symbol on one New York trading day (a weekday; a
holiday simply has no bars). :class:`DayLedger` records each finished (symbol, day)
under ``<lake>/_backfill/<source>/`` after its bars are in the lake (``lake.write_bars``
writes whole files), so a run killed at any point loses at most the requests in flight
and a rerun asks only for what is not recorded. The lake is any
:class:`core.storage.Storage` location (a path, ``file://``, ``s3://``...). A day is recorded
only once it is over in New York and the provider's delay has passed. The folder
starts with ``_``, so bar readers (``market.research.data``) never see it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from core.storage import Storage

NEW_YORK = ZoneInfo("America/New_York")
BAR_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
SESSION_OPEN, SESSION_CLOSE = time(9, 30), time(16, 0)
SETTLE = timedelta(minutes=20)  # Alpaca's free SIP data is 15 minutes late


@dataclass(frozen=True)
class Unit:
    """One request's worth: ``symbols`` over the consecutive trading days ``days``."""

    symbols: tuple[str, ...]
    days: tuple[date, ...]

    def bounds(self) -> tuple[datetime, datetime]:
        """Return [New York midnight of the first day, of the day after the last) in UTC."""
        return ny_midnight(self.days[0]), ny_midnight(self.days[-1] + timedelta(days=1))


def ny_midnight(day: date) -> datetime:
    """Return the start of ``day`` in New York as a UTC datetime."""
    return datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)


def weekdays(first: date, last: date) -> list[date]:
    """Return Monday-to-Friday dates from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)
            if (first + timedelta(days=i)).weekday() < 5]


def day_is_over(day: date, now: datetime) -> bool:
    """Return whether ``day``'s bars are final at ``now`` (New York midnight plus the delay)."""
    return now >= ny_midnight(day + timedelta(days=1)) + SETTLE


def plan_units(missing: Mapping[str, Sequence[date]], days: Sequence[date],
               symbol_days: int) -> list[Unit]:
    """Group the missing (symbol, day) pairs into requests of at most ``symbol_days`` pairs.

    Each symbol's missing days are cut into runs of consecutive trading days (of
    ``days``) at most ``symbol_days`` long; symbols missing the same run share requests.
    """
    position = {d: i for i, d in enumerate(days)}
    by_run: dict[tuple[date, ...], list[str]] = {}
    for symbol, wanted in missing.items():
        run: list[date] = []
        for day in sorted(wanted):
            if run and (position[day] != position[run[-1]] + 1 or len(run) == symbol_days):
                by_run.setdefault(tuple(run), []).append(symbol)
                run = []
            run.append(day)
        if run:
            by_run.setdefault(tuple(run), []).append(symbol)
    units = []
    for run_days, symbols in sorted(by_run.items()):
        per_unit = max(1, symbol_days // len(run_days))
        for i in range(0, len(symbols), per_unit):
            units.append(Unit(tuple(symbols[i:i + per_unit]), run_days))
    return units


def bars_frame(raw: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """Return Alpaca bar JSON (``{symbol: [{t, o, h, l, c, v}, ...]}``) as lake columns.

    A value of the wrong type becomes null (and :func:`clean_bars` counts the bar);
    an entry that is not an object becomes a row of nulls.
    """
    fields = {"timestamp": "t", "open": "o", "high": "h", "low": "l", "close": "c",
              "volume": "v"}
    bars = [(symbol, b if isinstance(b, Mapping) else {}) for symbol, items in raw.items()
            for b in items]
    columns = {name: pl.Series(name, [b.get(key) for _, b in bars],
                               dtype=pl.String if name == "timestamp" else pl.Float64,
                               strict=False) for name, key in fields.items()}
    return pl.DataFrame([pl.Series("symbol", [s for s, _ in bars], pl.String),
                         *columns.values()]).with_columns(
        pl.col("timestamp").str.to_datetime(time_unit="ns", time_zone="UTC", strict=False))


def clean_bars(frame: pl.DataFrame, start: datetime, end: datetime, *,
               days: Collection[date], regular_hours: bool
               ) -> tuple[pl.DataFrame, Counter[str]]:
    """Drop bars no research job should see; return the rest and the count per reason.

    A bar whose time is unparseable or outside ``[start, end]`` (Alpaca's ``end`` is
    inclusive) counts as ``bad_time``. Of the rest, bars of New York dates outside
    ``days`` (the weekends inside a run, a bar at ``end``) and, with ``regular_hours``,
    outside 09:30–16:00 New York are left out uncounted. Of those kept: ``bad_price``
    (missing, non-positive or not finite), ``bad_range`` (high below low, open or
    close), ``bad_volume`` (negative or missing), ``duplicate`` (a second bar for the
    minute).
    """
    dropped: Counter[str] = Counter()
    bad_time = (pl.col("timestamp").is_null() | (pl.col("timestamp") < start)
                | (pl.col("timestamp") > end))
    count = int(frame.select(bad_time.sum())[0, 0])
    if count:
        dropped["bad_time"] += count
        frame = frame.filter(~bad_time)
    local = pl.col("timestamp").dt.convert_time_zone("America/New_York")
    keep = local.dt.date().is_in(list(days))
    if regular_hours:
        keep = keep & (local.dt.time() >= SESSION_OPEN) & (local.dt.time() < SESSION_CLOSE)
    frame = frame.filter(keep)
    prices = ("open", "high", "low", "close")
    checks = [
        ("bad_price", pl.any_horizontal(*(pl.col(p).is_null() | ~pl.col(p).is_finite()
                                          | (pl.col(p) <= 0) for p in prices))),
        ("bad_range", (pl.col("high") < pl.col("low")) | (pl.col("high") < pl.max_horizontal(
            "open", "close")) | (pl.col("low") > pl.min_horizontal("open", "close"))),
        ("bad_volume", pl.col("volume").is_null() | (pl.col("volume") < 0)),
    ]
    for reason, bad in checks:
        mask = frame.select(bad.fill_null(True).alias("bad"))["bad"]
        count = int(mask.sum())
        if count:
            dropped[reason] += count
            frame = frame.filter(~mask)
    before = frame.height
    frame = frame.unique(["symbol", "timestamp"], keep="first", maintain_order=True)
    if before - frame.height:
        dropped["duplicate"] += before - frame.height
    return frame.sort("symbol", "timestamp"), dropped


class DayLedger:
    """The (symbol, day) pairs a source has finished, under ``<lake>/_backfill/<source>/``.

    One text file per symbol (``<day> <bars>`` lines), rewritten whole on each
    :meth:`mark` (object stores have no append; readers see the old or the new file).
    ``settings`` (e.g. the feed and the price adjustment) are fixed at the first run: a
    lake holds one kind of bars, so a run with other settings is refused.
    """

    def __init__(self, lake: Path | str | Storage, source: str,
                 settings: Mapping[str, Any]) -> None:
        self.folder = (lake if isinstance(lake, Storage) else Storage(lake)).child(
            "_backfill", source)
        self.folder.makedirs()
        wanted = json.dumps(dict(settings), sort_keys=True)
        if self.folder.exists("settings.json"):
            stored = json.dumps(json.loads(self.folder.read_text("settings.json")),
                                sort_keys=True)
            if stored != wanted:
                raise ValueError(f"this lake was filled with {stored}; "
                                 f"asked for {wanted}: use another lake")
        else:
            self.folder.write_text("settings.json", wanted + "\n")
        self._lock = threading.Lock()

    def _read(self, symbol: str) -> str:
        try:
            return self.folder.read_text(f"{symbol}.days")
        except FileNotFoundError:
            return ""

    def done(self, symbol: str) -> set[date]:
        """Return the days finished for ``symbol`` (an unreadable line is ignored)."""
        days = set()
        for line in self._read(symbol).splitlines():
            try:
                days.add(date.fromisoformat(line.split(" ", 1)[0]))
            except ValueError:
                continue
        return days

    def mark(self, symbol: str, days: Iterable[tuple[date, int]]) -> None:
        """Record ``(day, bars)`` pairs of ``symbol`` as finished."""
        text = "".join(f"{day.isoformat()} {bars}\n" for day, bars in days)
        if not text:
            return
        with self._lock:
            self.folder.write_text(f"{symbol}.days", self._read(symbol) + text)
