"""The fake Alpaca server's historical side: option bars, past listings, rate limiting.

Kept apart from :mod:`market.feeds.alpaca_fake` (the live protocol) so each reads on its
own. Wire formats follow Alpaca's market-data and trading APIs as alpaca-py parses them:

* ``GET /v1beta1/options/bars`` → ``{"bars": {contract: [{t, o, h, l, c, v, n, vw}]},
  "next_page_token"}``; a contract has a bar only in minutes it traded (here three
  minutes in four, a deterministic draw) and none after its expiration;
* ``GET /v2/options/contracts`` with ``expiration_date_gte``: the contracts listed
  then (Friday expirations in the range, strikes around the underlying's price on
  ``expiration_date_gte``), ``status`` ``active`` (not expired by the server's clock,
  Alpaca's default) or ``inactive``;
* HTTP 429 ``{"message": "too many requests."}`` with ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds) as Alpaca sends,
  plus ``Retry-After`` on injected refusals (:meth:`RateGate.throttle_next`).
No alpaca-py here: this is the other side of the wire.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

NS_MIN = 60_000_000_000
EXPIRY_CLOSE_UTC_HOUR = 20  # 16:00 New York in summer: no option bars after it


class RateGate:
    """Alpaca's per-account request limit (a sliding window) and injected 429s."""

    def __init__(self) -> None:
        self.limit: tuple[int, float] | None = None  # (requests, window_s) when enforced
        self._times: deque[float] = deque()
        self._throttle: deque[float | None] = deque()
        self._lock = threading.Lock()
        self.refused = 0

    def throttle_next(self, count: int = 1, retry_after_s: float | None = 1.0) -> None:
        """Refuse the next ``count`` data requests with 429 (``Retry-After`` unless None)."""
        with self._lock:
            self._throttle.extend([retry_after_s] * count)

    def check(self) -> dict[str, str] | None:
        """Admit one request now, or return the 429's headers."""
        now = time.monotonic()
        with self._lock:
            if self._throttle:
                retry_after = self._throttle.popleft()
                self.refused += 1
                headers = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": str(math.ceil(time.time()
                                                              + (retry_after or 1.0)))}
                if retry_after is not None:
                    headers["Retry-After"] = f"{retry_after:g}"
                return headers
            if self.limit is None:
                return None
            limit, window = self.limit
            while self._times and self._times[0] <= now - window:
                self._times.popleft()
            if len(self._times) >= limit:
                self.refused += 1
                reset = time.time() + (self._times[0] + window - now)
                return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(math.ceil(reset))}
            self._times.append(now)
            return None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def traded(contract: str, minute: int) -> bool:
    """Return whether ``contract`` has a bar in ``minute`` (three minutes in four)."""
    return zlib.crc32(f"{contract}|{minute}".encode()) % 4 != 0


def expiration_of(contract: str) -> date:
    """Return the expiration date in an OCC symbol."""
    return datetime.strptime(contract[-15:-9], "%y%m%d").replace(tzinfo=UTC).date()


def option_bar(price: Callable[[str, float], tuple[float, float]], contract: str,
               minute: int) -> dict[str, float]:
    """Return the bar of ``contract`` in ``minute``: opens and closes at the quote mids."""
    mids = [sum(price(contract, m)) / 2 for m in (minute, minute + 0.5, minute + 1)]
    o, c = round(mids[0], 2), round(mids[2], 2)
    return {"o": o, "h": round(max(mids) + 0.01, 2), "l": round(max(min(mids) - 0.01, 0.01), 2),
            "c": c, "v": float(1 + zlib.crc32(f"{contract}{minute}".encode()) % 20),
            "n": 1 + zlib.crc32(f"{minute}{contract}".encode()) % 5,
            "vw": round(sum(mids) / 3, 4)}


def option_bar_rows(contracts: list[str], minutes: range) -> list[tuple[str, int]]:
    """Return the (contract, minute) pairs that have bars, contract-major as Alpaca pages."""
    rows = []
    for contract in contracts:
        stop = int(datetime.combine(expiration_of(contract), datetime.min.time(), UTC)
                   .timestamp() // 60) + EXPIRY_CLOSE_UTC_HOUR * 60
        rows += [(contract, m) for m in minutes if m < stop and traded(contract, m)]
    return rows


def listed_expirations(first: date, last: date) -> list[date]:
    """Return the Fridays from ``first`` to ``last`` inclusive."""
    day = first + timedelta(days=(4 - first.weekday()) % 7)
    out = []
    while day <= last:
        out.append(day)
        day += timedelta(days=7)
    return out
