"""Fill the history lake from Alpaca's historical 1-minute bars (``backfill --source alpaca``).

    python -m pipelines.backfill --source alpaca --symbols AAPL,MSFT \\
        --start 2025-01-02 --end 2025-06-30 --out LAKE [--feed iex|sip] \\
        [--adjustment raw|split|dividend|all] [--hours regular|extended] \\
        [--rate-limit 200] [--concurrency 4] [--symbol-days 10]

The binding constraint is Alpaca's rate limit (200 requests a minute on the free plan),
not CPU, so the driver fetches with ``--concurrency`` threads behind one pacer
(:class:`market.feeds.alpaca_history.RequestPacer`) rather than in Ray tasks whose
limiters could not see each other. Each request asks for up to ``--symbol-days``
(symbol, day) pairs (alpaca-py follows the pages); the bars are checked
(:func:`market.research.backfill_plan.clean_bars`), merged into the lake
(``lake.write_bars``) and the finished days recorded, so a rerun fetches only what is
missing and a killed run resumes (:class:`market.research.backfill_plan.DayLedger`).
A failed request is counted in the manifest and its days stay missing; the rest go on.
A refused key (401/403) stops the run. Credentials never reach the manifest or logs.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from core.errors import InvalidInput, MarketrayError
from core.storage import Storage
from market.research import lake
from market.research.backfill_plan import (
    NEW_YORK,
    DayLedger,
    Unit,
    bars_frame,
    clean_bars,
    day_is_over,
    plan_units,
    weekdays,
)
from pipelines import _jobs

if TYPE_CHECKING:
    from core.settings import Settings

MAX_ERRORS_LISTED = 50
# 10 days of 04:00-20:00 New York minute bars (9,600) fit one 10,000-bar page
SYMBOL_DAYS = 10


@dataclass
class UnitDone:
    """One request's outcome."""

    unit: Unit
    bars: int = 0
    finished_days: int = 0
    open_days: int = 0
    empty_days: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    error: str | None = None


class _Fetcher:
    """Fetch, check, write and record one :class:`Unit` at a time; shared by threads."""

    def __init__(self, root: Storage, history: Any, ledger: DayLedger, *,
                 regular_hours: bool, now: datetime) -> None:
        self.root, self.history, self.ledger = root, history, ledger
        self.regular_hours, self.now = regular_hours, now
        self._symbol_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.stop = threading.Event()

    def _lock(self, symbol: str) -> threading.Lock:
        with self._locks_lock:
            return self._symbol_locks.setdefault(symbol, threading.Lock())

    def __call__(self, unit: Unit) -> UnitDone:
        from market.feeds.alpaca_history import HistoryRequestError

        done = UnitDone(unit)
        if self.stop.is_set():
            done.error = "not sent: the run stopped"
            return done
        start, end = unit.bounds()
        try:
            raw = self.history.stock_bars(unit.symbols, start, end)
        except HistoryRequestError as exc:
            if exc.refused_credentials:
                self.stop.set()
            done.error = f"{','.join(unit.symbols)} {unit.days[0]}..{unit.days[-1]}: " \
                         f"{exc.message}"
            return done
        try:
            frame = bars_frame(raw)
        except (AttributeError, TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            done.error = f"{','.join(unit.symbols)} {unit.days[0]}..{unit.days[-1]}: " \
                         f"malformed bars ({type(exc).__name__}: {str(exc)[:200]})"
            return done
        unexpected = frame.filter(~pl.col("symbol").is_in(unit.symbols)).height
        if unexpected:
            done.dropped["unexpected_symbol"] += unexpected
            frame = frame.filter(pl.col("symbol").is_in(unit.symbols))
        frame, dropped = clean_bars(frame, start, end, days=unit.days,
                                    regular_hours=self.regular_hours)
        done.dropped.update(dropped)
        days = frame.select(pl.col("symbol"), pl.col("timestamp").dt.convert_time_zone(
            "America/New_York").dt.date().alias("day"))
        for symbol in unit.symbols:
            part = frame.filter(pl.col("symbol") == symbol)
            per_day = Counter(days.filter(pl.col("symbol") == symbol)["day"].to_list())
            with self._lock(symbol):
                if part.height:
                    lake.write_bars(self.root, part)
                finished = [(d, per_day.get(d, 0)) for d in unit.days
                            if day_is_over(d, self.now)]
                self.ledger.mark(symbol, finished)
            done.bars += part.height
            done.finished_days += len(finished)
            done.empty_days += sum(1 for _, n in finished if n == 0)
            done.open_days += len(unit.days) - len(finished)
        return done


def run_alpaca(out: str | Path | Storage, symbols: Sequence[str], start: date | str,
               end: date | str, *, settings: Settings | None = None, feed: str | None = None,
               adjustment: str = "raw", hours: str = "regular", rate_limit: int = 200,
               window_s: float = 60.0, concurrency: int = 4, symbol_days: int = SYMBOL_DAYS,
               retries: int = 6, backoff_s: float = 1.0, progress: bool = False,
               now: datetime | None = None) -> dict[str, Any]:
    """Fetch the missing (symbol, day) bars into the lake at ``out``; return the manifest.

    ``out``: a path, a URI (``s3://...``) or a :class:`core.storage.Storage`.
    ``start``/``end`` are New York trading days, inclusive. ``settings`` defaults to
    ``Settings()`` (the ``MARKETRAY_ALPACA_*`` environment). ``now`` (UTC) decides which
    days are over and may be recorded as finished; tests pass it, callers need not.
    """
    from core.settings import Settings
    from market.feeds.alpaca_history import AlpacaHistory, RequestPacer

    started = time.perf_counter()
    names, first, last = _jobs.symbols_and_dates(symbols, start, end)
    days = weekdays(first, last)
    if not names or not days:
        raise InvalidInput("need at least one symbol and one weekday from start to end")
    if hours not in ("regular", "extended") or symbol_days < 1 or concurrency < 1:
        raise InvalidInput("hours is regular or extended; symbol_days and concurrency ≥ 1")
    settings = settings or Settings()
    root = lake.lake_storage(out)
    root.makedirs()
    history = AlpacaHistory(settings, pacer=RequestPacer(rate_limit, window_s), feed=feed,
                            adjustment=adjustment, retries=retries, backoff_s=backoff_s)
    kind = {"feed": history.feed.value, "adjustment": history.adjustment.value, "hours": hours}
    try:
        ledger = DayLedger(root, "alpaca", kind)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    missing = {s: [d for d in days if d not in done] for s in names
               for done in [ledger.done(s)]}
    skipped = sum(len(days) - len(m) for m in missing.values())
    units = plan_units({s: m for s, m in missing.items() if m}, days, symbol_days)
    fetcher = _Fetcher(root, history, ledger, regular_hours=hours == "regular",
                       now=now or datetime.now(UTC))
    bar = _jobs.Progress(len(units), enabled=progress, what="requests")
    results: list[UnitDone] = []
    fetch_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        for future in as_completed([pool.submit(fetcher, u) for u in units]):
            result = future.result()
            results.append(result)
            bar.advance(1, result.bars)
    bar.close()
    dropped: Counter[str] = Counter()
    for r in results:
        dropped.update(r.dropped)
    errors = [r.error for r in results if r.error]
    manifest: dict[str, Any] = {
        "job": "backfill",
        "config": {"source": "alpaca", "symbols": len(names), "first_day": days[0].isoformat(),
                   "last_day": days[-1].isoformat(), **kind,
                   "rate_limit": {"requests": rate_limit, "window_s": window_s},
                   "concurrency": concurrency, "symbol_days_per_request": symbol_days,
                   "data_url": settings.alpaca_data_url or "https://data.alpaca.markets"},
        "seed": None,
        "libraries": _jobs.library_versions(),
        "bars_written": sum(r.bars for r in results),
        "symbol_days": {"wanted": len(names) * len(days), "already_done": skipped,
                        "finished": sum(r.finished_days for r in results),
                        "finished_without_bars": sum(r.empty_days for r in results),
                        "fetched_not_over": sum(r.open_days for r in results),
                        "failed": sum(len(r.unit.symbols) * len(r.unit.days)
                                      for r in results if r.error)},
        "units": {"planned": len(units), "failed": len(errors)},
        "bars_dropped": dict(sorted(dropped.items())),
        "http": {**history.stats.as_dict(), "pacer_wait_s": history.pacer.waited_s},
        "errors": errors[:MAX_ERRORS_LISTED],
        "timings": {"total_wall_s": time.perf_counter() - started,
                    "fetch_write_wall_s": time.perf_counter() - fetch_started},
    }
    manifest["data_version"] = _jobs.storage_version(root)
    _jobs.write_manifest(root, manifest)
    if fetcher.stop.is_set():
        raise InvalidInput("Alpaca refused the credentials (MARKETRAY_ALPACA_KEY_ID / "
                           f"_SECRET_KEY): {errors[0] if errors else ''}")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Alpaca source's options to the backfill job's parser."""
    parser.add_argument("--feed", default=None, help="alpaca: iex or sip (default: settings)")
    parser.add_argument("--adjustment", default="raw",
                        choices=("raw", "split", "dividend", "all"),
                        help="alpaca: corporate-action adjustment of prices")
    parser.add_argument("--hours", default="regular", choices=("regular", "extended"),
                        help="alpaca: keep 09:30-16:00 New York bars, or all Alpaca serves")
    parser.add_argument("--rate-limit", type=int, default=200, help="alpaca: requests/minute")
    parser.add_argument("--concurrency", type=int, default=4, help="alpaca: request threads")
    parser.add_argument("--symbol-days", type=int, default=SYMBOL_DAYS,
                        help="alpaca: (symbol, day) pairs asked per request")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the Alpaca backfill from parsed options; print the manifest's summary."""
    if not args.symbols or not args.start:
        print("error: --source alpaca needs --symbols and --start", file=sys.stderr)
        return 2
    try:
        end = args.end or datetime.now(NEW_YORK).date().isoformat()
        manifest = run_alpaca(args.out, args.symbols.split(","), args.start, end,
                              feed=args.feed, adjustment=args.adjustment, hours=args.hours,
                              rate_limit=args.rate_limit, concurrency=args.concurrency,
                              symbol_days=args.symbol_days, progress=True)
    except MarketrayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("bars_written", "symbol_days", "bars_dropped",
                                               "http", "errors", "timings", "data_version")},
                     indent=2))
    if manifest["units"]["failed"]:
        print(f"error: {manifest['units']['failed']} requests failed; rerun to retry them",
              file=sys.stderr)
        return 1
    return 0
