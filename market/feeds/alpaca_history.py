"""Alpaca's historical market data through alpaca-py, paced within Alpaca's rate limit.

Every HTTP request of the clients (each page of a paginated call included) passes one
:class:`RequestPacer` shared by all threads: a GCRA that lets at most ``limit`` requests
into any ``window_s`` (Alpaca's free plan: 200 a minute). A 429 pauses every thread
for the response's ``Retry-After`` (else until ``X-RateLimit-Reset``, else an
exponential backoff) and the request is sent again; 5xx answers are retried with the
backoff. alpaca-py's own fixed-wait retry never sees a 429: the adapter retries or
raises :class:`HistoryRequestError`. The clients return raw JSON (``raw_data=True``),
which callers turn into polars frames: models would be built only to be taken apart
(their parse cost is in ``docs/research.md``).
Credentials come from :class:`core.settings.Settings` and appear in no message.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import OptionBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetStatus
from alpaca.trading.requests import GetOptionContractsRequest
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from core.errors import FeedError
from market.cache.gcra import Quota, take

if TYPE_CHECKING:
    from core.settings import Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TIMEOUT_S = 60.0  # per request; alpaca-py sets none, and a stalled socket would hang a thread
OPTION_SYMBOLS_PER_REQUEST = 100  # Alpaca's cap on the symbols of one option-bars request
RawBars = dict[str, list[dict[str, Any]]]


class HistoryRequestError(FeedError):
    """An Alpaca historical request failed; ``http_status`` is Alpaca's answer (or None)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status

    @property
    def refused_credentials(self) -> bool:
        """Whether Alpaca refused the key (every further request would fail the same)."""
        return self.http_status in (401, 403)


class RequestPacer:
    """Block each request until it fits ``limit`` requests per ``window_s``; thread-safe.

    A GCRA with a burst of ``burst`` and a sustained rate of ``(limit - burst) /
    window_s``, so no window of ``window_s`` holds more than ``limit`` requests even
    against a sliding-window server.
    """

    def __init__(self, limit: int = 200, window_s: float = 60.0, *, burst: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 2 or window_s <= 0:
            raise ValueError("the rate limit needs at least 2 requests over a positive window")
        burst = max(1, min(burst, limit // 2))
        self.limit, self.window_s, self.burst = limit, window_s, burst
        self._quota = Quota(burst, burst * window_s / (limit - burst))
        self._tat: float | None = None
        self._paused_until = 0.0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> None:
        """Return when one more request may go out."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if wait <= 0:
                    decision, tats = take([self._tat], now, 1, [self._quota])
                    if tats is not None:
                        self._tat = tats[0]
                        return
                    wait = decision.retry_after_s
                self.waited_s += wait
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (the server said the limit is hit)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


@dataclass
class RequestStats:
    """What the adapter saw, summed over threads."""

    requests: int = 0
    throttled: int = 0
    server_errors: int = 0
    network_errors: int = 0
    retry_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        """Add to the named counters."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        """Return the counters."""
        return {"requests": self.requests, "throttled_429": self.throttled,
                "server_errors_5xx": self.server_errors, "network_errors": self.network_errors,
                "retry_wait_s": self.retry_wait_s}


def retry_after_s(response: Response, *, wall: Callable[[], float] = time.time) -> float | None:
    """Return how long a 429 asks to wait: ``Retry-After``, else ``X-RateLimit-Reset``."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            moment = email.utils.parsedate_to_datetime(header)
            return max(0.0, moment.timestamp() - wall())
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - wall())
        except ValueError:
            return None
    return None


class PacedAdapter(HTTPAdapter):
    """A requests adapter that paces every send and retries 429s, 5xx and network errors."""

    def __init__(self, pacer: RequestPacer, stats: RequestStats, *, retries: int = 6,
                 backoff_s: float = 1.0, backoff_max_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.pacer, self.stats, self.sleep = pacer, stats, sleep
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        """Send ``request`` once the pacer allows; retry failures; raise when they persist."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT_S
        status: int | str = "no answer"
        for attempt in range(self.retries + 1):
            self.pacer.acquire()
            backoff = min(self.backoff_max_s, self.backoff_s * 2 ** attempt)
            self.stats.add(requests=1)
            try:
                response = super().send(request, *args, **kwargs)
            except (RequestsConnectionError, Timeout) as exc:
                status = type(exc).__name__
                self.stats.add(network_errors=1)
                if attempt < self.retries:
                    self.stats.add(retry_wait_s=backoff)
                    self.sleep(backoff)
                continue
            status = response.status_code
            if status not in RETRY_STATUSES:
                return response
            response.close()
            self.stats.add(**{"throttled" if status == 429 else "server_errors": 1})
            if attempt == self.retries:
                break
            if status == 429:
                wait = retry_after_s(response)
                wait = backoff if wait is None else min(wait, self.backoff_max_s)
                self.stats.add(retry_wait_s=wait)
                self.pacer.pause(wait)  # the account's limit: every thread waits
            else:
                self.stats.add(retry_wait_s=backoff)
                self.sleep(backoff)
        raise HistoryRequestError(
            f"alpaca: {status} on each of {self.retries + 1} tries of {request.path_url}",
            status if isinstance(status, int) else None)


@dataclass
class _Clients:
    stock: StockHistoricalDataClient
    option: OptionHistoricalDataClient
    trading: TradingClient


class AlpacaHistory:
    """alpaca-py's historical clients behind one :class:`RequestPacer`; safe across threads.

    ``feed`` (``iex``, ``sip``, ...) and ``adjustment`` (``raw``, ``split``, ``dividend``,
    ``all``) are Alpaca's stock-bar settings. Each thread gets its own clients (a
    ``requests.Session`` is not thread-safe); all share the pacer and the stats.
    """

    def __init__(self, settings: Settings, *, pacer: RequestPacer | None = None,
                 feed: str | None = None, adjustment: str = "raw", retries: int = 6,
                 backoff_s: float = 1.0) -> None:
        if settings.alpaca_key_id is None or settings.alpaca_secret_key is None:
            raise FeedError("the Alpaca source needs MARKETRAY_ALPACA_KEY_ID and "
                            "MARKETRAY_ALPACA_SECRET_KEY")
        self._settings = settings
        self._key, self._secret = settings.alpaca_key_id, settings.alpaca_secret_key
        self.pacer = pacer or RequestPacer()
        self.stats = RequestStats()
        self.feed = DataFeed(feed or settings.alpaca_feed)
        self.adjustment = Adjustment(adjustment)
        self._retries, self._backoff_s = retries, backoff_s
        self._local = threading.local()

    def _clients(self) -> _Clients:
        clients: _Clients | None = getattr(self._local, "clients", None)
        if clients is None:
            s = self._settings
            key, secret = self._key.get_secret_value(), self._secret.get_secret_value()
            clients = _Clients(
                StockHistoricalDataClient(key, secret, raw_data=True,
                                          url_override=s.alpaca_data_url),
                OptionHistoricalDataClient(key, secret, raw_data=True,
                                           url_override=s.alpaca_data_url),
                TradingClient(key, secret, paper=True, raw_data=True,
                              url_override=s.alpaca_trading_url))
            adapter = PacedAdapter(self.pacer, self.stats, retries=self._retries,
                                   backoff_s=self._backoff_s)
            for client in (clients.stock, clients.option, clients.trading):
                # alpaca-py has no hook for its session; mounting is how requests is extended
                client._session.mount("https://", adapter)  # noqa: SLF001
                client._session.mount("http://", adapter)  # noqa: SLF001
            self._local.clients = clients
        return clients

    def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        try:
            return fn(request)
        except HistoryRequestError:
            raise
        except APIError as exc:
            status = exc.status_code
            raise HistoryRequestError(f"alpaca {status}: {_message(exc)}", status) from exc
        except Exception as exc:  # network, JSON: one failed request, not a failed job
            raise HistoryRequestError(f"alpaca unreachable: {type(exc).__name__}: {exc}"
                                      ) from exc

    def stock_bars(self, symbols: Sequence[str], start: datetime, end: datetime) -> RawBars:
        """Return 1-minute bars of ``symbols`` in ``[start, end)`` as Alpaca's JSON by symbol."""
        request = StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Minute,
                                   start=start, end=end, feed=self.feed,
                                   adjustment=self.adjustment)
        raw: RawBars = self._call(self._clients().stock.get_stock_bars, request)
        return raw

    def option_bars(self, contracts: Sequence[str], start: datetime, end: datetime) -> RawBars:
        """Return 1-minute bars of OCC ``contracts`` in ``[start, end)`` by contract."""
        out: RawBars = {}
        for i in range(0, len(contracts), OPTION_SYMBOLS_PER_REQUEST):
            request = OptionBarsRequest(
                symbol_or_symbols=list(contracts[i:i + OPTION_SYMBOLS_PER_REQUEST]),
                timeframe=TimeFrame.Minute, start=start, end=end)
            out.update(self._call(self._clients().option.get_option_bars, request))
        return out

    def option_contracts(self, underlying: str, first: date, last: date
                         ) -> list[dict[str, Any]]:
        """Return the contracts of ``underlying`` expiring in ``[first, last]``, expired too."""
        out: list[dict[str, Any]] = []
        for status in (AssetStatus.ACTIVE, AssetStatus.INACTIVE):
            token: str | None = None
            while True:
                page = self._call(self._clients().trading.get_option_contracts,
                                  GetOptionContractsRequest(
                                      underlying_symbols=[underlying], status=status,
                                      expiration_date_gte=first, expiration_date_lte=last,
                                      limit=10_000, page_token=token))
                out += page.get("option_contracts") or []
                token = page.get("next_page_token")
                if not token:
                    break
        return out


def _message(exc: APIError) -> str:
    try:
        return str(exc.message)
    except (ValueError, KeyError, TypeError):
        return str(exc)[:200]
