"""A local server that speaks Alpaca's market-data protocol, for tests and demos.

One port serves both:

* REST: ``GET /v2/stocks/bars``, ``GET /v1beta1/options/snapshots/{underlying}``
  (option chain), ``GET /v2/options/contracts`` (with open interest; past listings
  too), ``GET /v1beta1/options/bars``, paged with ``next_page_token`` like Alpaca's,
  authenticated by the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers, every
  request logged in :attr:`FakeAlpacaServer.requests`, rate limited and refused with
  429 on demand (:attr:`FakeAlpacaServer.gate`; :mod:`market.feeds.alpaca_fake_history`);
* WebSocket streams ``/v2/{feed}`` (stocks: trades, quotes, bars, updated bars) and
  ``/v1beta1/{feed}`` (options: trades, quotes), msgpack-framed: ``connected``
  → auth → subscription → arrays of data messages whose ``t`` is a msgpack
  Timestamp. A second authenticated connection to the same stream is refused
  with 406, as Alpaca does.

Prices are a deterministic function of (symbol, minute), so the bars served
over REST equal the bars streamed live (a minute's bar is streamed when it ends,
short of its late trades' volume, then again as an updated bar 30 market-seconds
later with the final figures REST serves): a client that misses live bars can
count exactly what backfill must recover. ``time_scale`` speeds the clock
(60 = one market minute per real second). Faults: :meth:`drop`,
:meth:`silence`, :meth:`garbage`, :meth:`refuse_next`, the ``reject_key``
/ ``insufficient_subscription`` switches, ``invalid_symbols`` (400 like Alpaca's
"invalid symbol") and ``corrupt_symbols`` (every fifth bar with its high below
its low). No alpaca-py here: this is the other side of the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from market.feeds.alpaca_fake_history import (
    RateGate,
    listed_expirations,
    option_bar,
    option_bar_rows,
)

NS_MIN = 60_000_000_000
UPDATED_BAR_DELAY_NS = 30 * 1_000_000_000  # Alpaca sends updated bars ~30 s after the minute
LATE_VOLUME = 100.0
GARBAGE_FRAMES: tuple[bytes, ...] = (
    b"\xc1\xc1 not msgpack",
    msgpack.packb({"T": "t", "S": "AAPL"}),  # a map, not an array
    msgpack.packb([{"T": "t", "S": "AAPL", "p": 1.0, "s": 1, "t": "2026-01-01T00:00:00Z"}]),
    msgpack.packb([{"T": "zz", "S": "AAPL", "weird": True}]),
    msgpack.packb([{"T": "q", "S": "AAPL", "bp": "x", "t": msgpack.Timestamp(0, 0)}]),
    msgpack.packb([42, None, "x"]),
)


def _h(symbol: str) -> float:
    return (zlib.crc32(symbol.encode()) % 10_000) / 10_000.0


def price_at(symbol: str, minute: float) -> float:
    """Return the fake price of ``symbol`` at ``minute`` (minutes since the epoch, fractional)."""
    h = _h(symbol)
    base = 20.0 + 480.0 * h
    return round(base * (1 + 0.02 * math.sin(minute / 37.0 + 6.28 * h)
                         + 0.004 * math.sin(minute / 3.1 + 3.0 * h)), 4)


def bar_at(symbol: str, minute: int) -> dict[str, float]:
    """Return the final OHLCV bar of ``symbol`` for the minute starting at ``minute``."""
    o, c = price_at(symbol, minute), price_at(symbol, minute + 1)
    mid = price_at(symbol, minute + 0.5)
    return {"o": o, "h": round(max(o, c, mid) + 0.05, 4), "l": round(min(o, c, mid) - 0.05, 4),
            "c": c, "v": float(1_000 + (zlib.crc32(f"{symbol}{minute}".encode()) % 500)),
            "n": 10, "vw": round((o + c + mid) / 3, 4)}


def first_bar_at(symbol: str, minute: int) -> dict[str, float]:
    """The bar streamed just after the minute: the final bar less its late trades' volume.

    Late prints reach the bar ``UPDATED_BAR_DELAY_NS`` later, as an updated bar (``"u"``)
    equal to :func:`bar_at`; REST serves the final bar.
    """
    bar = bar_at(symbol, minute)
    return {**bar, "v": bar["v"] - LATE_VOLUME, "n": bar["n"] - 1}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str | None) -> int | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def _occ(underlying: str, expiration: date, is_call: bool, strike: float) -> str:
    return f"{underlying}{expiration:%y%m%d}{'C' if is_call else 'P'}{round(strike * 1000):08d}"


class FakeAlpacaServer:
    """Alpaca's REST and stream protocol on ``127.0.0.1:<port>`` with fault injection."""

    def __init__(
        self,
        *,
        key: str = "test-key",
        secret: str = "test-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        tick_interval_s: float = 0.05,
        strikes_per_side: int = 4,
        expirations: int = 2,
    ) -> None:
        self.key, self.secret, self.host, self.port = key, secret, host, port
        self.time_scale = time_scale
        self.tick_interval_s = tick_interval_s
        self.strikes_per_side = strikes_per_side
        self.expirations = expirations
        self.reject_key = False
        self.insufficient_subscription = False
        self._refuse_next = 0
        self._silent_until = 0.0
        self._start_wall_ns = time.time_ns()
        self._start_mono = time.monotonic()
        self._streams: dict[str, ServerConnection] = {}
        self._garbage: dict[ServerConnection, int] = {}
        self.stats: Counter[str] = Counter()
        self.requests: list[tuple[float, str, dict[str, str]]] = []  # (monotonic, path, query)
        self.gate = RateGate()
        self.invalid_symbols: set[str] = set()
        self.corrupt_symbols: set[str] = set()
        self.bars_streamed: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # Clock.

    def now_ns(self) -> int:
        """Return the market clock: wall clock at start, then ``time_scale`` times faster."""
        return self._start_wall_ns + int((time.monotonic() - self._start_mono)
                                         * self.time_scale * 1e9)

    def completed_minutes(self, start_ns: int | None, end_ns: int | None) -> range:
        """Return the minute numbers of completed bars in ``[start_ns, end_ns)``."""
        now_minute = self.now_ns() // NS_MIN
        first = -(-start_ns // NS_MIN) if start_ns is not None else now_minute - 390
        last = now_minute if end_ns is None else min(now_minute, -(-end_ns // NS_MIN))
        return range(first, max(first, last))

    # Fault injection (callable from any thread).

    def drop(self) -> None:
        """Cut every stream connection without a closing handshake."""
        self._call(self._drop)

    def _drop(self) -> None:
        for conn in list(self._streams.values()):
            conn.transport.abort()
        self.stats["drops"] += 1

    def silence(self, seconds: float) -> None:
        """Keep connections open but send no data for ``seconds``."""
        self._silent_until = time.monotonic() + seconds

    def garbage(self, frames: int = len(GARBAGE_FRAMES)) -> None:
        """Send ``frames`` malformed or unexpected frames on every stream connection."""
        for conn in list(self._streams.values()):
            self._garbage[conn] = self._garbage.get(conn, 0) + frames

    def refuse_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` stream logins with 406 "connection limit exceeded"."""
        self._refuse_next += count

    def _call(self, fn: Any) -> None:
        if self._loop is None:
            return
        if threading.current_thread() is self._thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    # Lifecycle.

    @property
    def base_url(self) -> str:
        """REST base URL (the historical and trading clients' ``url_override``)."""
        return f"http://{self.host}:{self.port}"

    def stock_stream_url(self, feed: str = "iex") -> str:
        """The stock stream's full URL."""
        return f"ws://{self.host}:{self.port}/v2/{feed}"

    def option_stream_url(self, feed: str = "indicative") -> str:
        """The option stream's full URL."""
        return f"ws://{self.host}:{self.port}/v1beta1/{feed}"

    async def serve(self) -> None:
        """Listen until cancelled (for ``marketray fake-alpaca``)."""
        await self._open()
        try:
            await asyncio.Future()
        finally:
            await self._close()

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await serve(self._stream, self.host, self.port,
                                   process_request=self._rest, max_size=2**22)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def start(self) -> FakeAlpacaServer:
        """Serve from a background thread; return once listening."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._open())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-alpaca", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop the background server."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # REST.

    def _json(self, status: int, body: object,
              extra: dict[str, str] | None = None) -> Response:
        data = json.dumps(body).encode()
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(data))), ("Connection", "close"),
                           *(extra or {}).items()])
        return Response(status, "OK" if status == 200 else "Error", headers, data)

    def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.stats[f"GET {url.path}"] += 1
        if url.path == "/_control":
            return self._control(query)
        if (self.reject_key or request.headers.get("APCA-API-KEY-ID") != self.key
                or request.headers.get("APCA-API-SECRET-KEY") != self.secret):
            return self._json(403, {"message": "forbidden"})
        self.requests.append((time.monotonic(), url.path, query))
        refusal = self.gate.check()
        if refusal is not None:
            self.stats["throttled"] += 1
            return self._json(429, {"message": "too many requests."}, refusal)
        try:
            invalid = sorted(set(query.get("symbols", "").split(",")) & self.invalid_symbols)
            if invalid:
                return self._json(400, {"code": 40010001,
                                        "message": f"invalid symbol: {invalid[0]}"})
            if url.path == "/v2/stocks/bars":
                return self._json(200, self._bars(query))
            if url.path == "/v1beta1/options/bars":
                return self._json(200, self._option_bars(query))
            if url.path.startswith("/v1beta1/options/snapshots/"):
                return self._json(200, self._snapshots(url.path.rsplit("/", 1)[1], query))
            if url.path == "/v2/options/contracts":
                return self._json(200, self._contracts(query))
        except (ValueError, KeyError) as exc:
            return self._json(422, {"message": str(exc)})
        return self._json(404, {"message": "not found"})

    def _control(self, query: dict[str, str]) -> Response:
        fault = query.get("fault", "")
        if fault == "drop":
            self._drop()
        elif fault == "silence":
            self.silence(float(query.get("seconds", "30")))
        elif fault == "garbage":
            self.garbage()
        elif fault == "refuse":
            self.refuse_next(int(query.get("count", "1")))
        elif fault == "reject_key":
            self.reject_key = query.get("on", "1") == "1"
        return self._json(200, {"ok": True, "stats": dict(self.stats)})

    def _page(self, items: list[Any], query: dict[str, str], default: int) -> tuple[list[Any],
                                                                                   str | None]:
        offset = int(query.get("page_token") or 0)
        limit = min(int(query.get("limit") or default), 10_000)
        page = items[offset: offset + limit]
        return page, (str(offset + limit) if offset + limit < len(items) else None)

    def _bars(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("timeframe", "1Min") not in ("1Min", "1T"):
            raise ValueError("only 1Min bars are served")
        minutes = self.completed_minutes(_parse_time(query.get("start")),
                                         _parse_time(query.get("end")))
        rows = [(s, m) for s in query["symbols"].split(",") for m in minutes]
        page, token = self._page(rows, query, 1_000)
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, minute in page:
            values = bar_at(symbol, minute)
            if symbol in self.corrupt_symbols and minute % 5 == 0:
                values["h"] = values["l"] - 1.0
            bars.setdefault(symbol, []).append({"t": _iso(minute * NS_MIN), **values})
        return {"bars": bars, "next_page_token": token}

    def _option_bars(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("timeframe", "1Min") not in ("1Min", "1T"):
            raise ValueError("only 1Min bars are served")
        minutes = self.completed_minutes(_parse_time(query.get("start")),
                                         _parse_time(query.get("end")))
        rows = option_bar_rows(query["symbols"].split(","), minutes)
        page, token = self._page(rows, query, 1_000)
        bars: dict[str, list[dict[str, Any]]] = {}
        for contract, minute in page:
            bars.setdefault(contract, []).append(
                {"t": _iso(minute * NS_MIN), **option_bar(self.option_price, contract, minute)})
        return {"bars": bars, "next_page_token": token}

    def chain(self, underlying: str, *, listed: date | None = None,
              last: date | None = None) -> list[tuple[str, date, bool, float]]:
        """Return the listed contracts (OCC, expiration, is_call, strike) of ``underlying``.

        By default what is listed now; with ``listed``, what was listed on that day
        expiring up to ``last`` (strikes around that day's price).
        """
        if listed is None:
            today = datetime.fromtimestamp(self.now_ns() / 1e9, UTC).date()
            fridays = [today + timedelta(days=(4 - today.weekday()) % 7 + 7 * i + 1)
                       for i in range(self.expirations)]
            spot = price_at(underlying, self._start_wall_ns // NS_MIN)
        else:
            fridays = listed_expirations(listed, last or listed + timedelta(days=35))
            noon = datetime.combine(listed, datetime.min.time(), UTC) + timedelta(hours=16)
            spot = price_at(underlying, noon.timestamp() // 60)
        step = 1.0 if spot < 50 else 5.0 if spot < 300 else 10.0
        atm = round(spot / step) * step
        out = []
        for expiration in fridays:
            for k in range(-self.strikes_per_side, self.strikes_per_side + 1):
                strike = atm + k * step
                for is_call in (True, False):
                    out.append((_occ(underlying, expiration, is_call, strike), expiration,
                                is_call, strike))
        return out

    def option_price(self, contract: str, minute: float) -> tuple[float, float]:
        """Return a (bid, ask) for the contract at ``minute``: intrinsic plus time value."""
        root, strike = contract[:-15], int(contract[-8:]) / 1000
        spot = price_at(root, minute)
        intrinsic = max(spot - strike, 0.0) if contract[-9] == "C" else max(strike - spot, 0.0)
        mid = intrinsic + 0.04 * spot * math.exp(-abs(spot - strike) / (0.05 * spot))
        return round(max(mid - 0.05, 0.01), 2), round(mid + 0.05, 2)

    def _snapshots(self, underlying: str, query: dict[str, str]) -> dict[str, Any]:
        now = self.now_ns()
        minute = now / NS_MIN
        items = []
        for contract, _, is_call, strike in self.chain(underlying):
            bid, ask = self.option_price(contract, minute)
            spot = price_at(underlying, minute)
            delta = 1 / (1 + math.exp(-(spot - strike) / (0.03 * spot)))
            items.append((contract, {
                "latestQuote": {"t": _iso(now), "bp": bid, "bs": 10, "ap": ask, "as": 12,
                                "bx": "C", "ax": "C", "c": "A"},
                "latestTrade": {"t": _iso(now), "p": round((bid + ask) / 2, 2), "s": 1,
                                "x": "C", "c": "I"},
                "impliedVolatility": 0.3 + 0.1 * abs(spot - strike) / spot,
                "greeks": {"delta": delta if is_call else delta - 1, "gamma": 0.01,
                           "theta": -0.05, "vega": 0.1, "rho": 0.02},
            }))
        page, token = self._page(items, query, 100)
        return {"snapshots": dict(page), "next_page_token": token}

    def open_interest(self, contract: str) -> int:
        """Return the contract's (fake) open interest."""
        return 100 + zlib.crc32(contract.encode()) % 5_000

    def _contracts(self, query: dict[str, str]) -> dict[str, Any]:
        items = []
        listed = date.fromisoformat(query["expiration_date_gte"]) \
            if query.get("expiration_date_gte") else None
        last = date.fromisoformat(query["expiration_date_lte"]) \
            if listed and query.get("expiration_date_lte") else None
        today = datetime.fromtimestamp(self.now_ns() / 1e9, UTC).date()
        for underlying in query.get("underlying_symbols", "").split(","):
            if not underlying:
                continue
            for contract, expiration, is_call, strike in self.chain(underlying, listed=listed,
                                                                     last=last):
                status = "active" if expiration >= today else "inactive"
                if listed is not None and status != query.get("status", "active"):
                    continue
                items.append({
                    "id": f"{zlib.crc32(contract.encode()):08x}-0000-4000-8000-000000000000",
                    "symbol": contract, "name": f"{underlying} option", "status": status,
                    "tradable": True, "expiration_date": expiration.isoformat(),
                    "root_symbol": underlying, "underlying_symbol": underlying,
                    "underlying_asset_id": "00000000-0000-4000-8000-000000000000",
                    "type": "call" if is_call else "put", "style": "american",
                    "strike_price": str(strike), "size": "100",
                    "open_interest": str(self.open_interest(contract)),
                    "open_interest_date": expiration.isoformat(),
                    "close_price": "1.0", "close_price_date": expiration.isoformat(),
                })
        page, token = self._page(items, query, 100)
        return {"option_contracts": page, "next_page_token": token}

    # Streams.

    async def _send(self, conn: ServerConnection, messages: list[dict[str, Any]]) -> None:
        await conn.send(msgpack.packb(messages))

    async def _stream(self, conn: ServerConnection) -> None:
        path = urlsplit(conn.request.path if conn.request else "/").path
        kind = "stock" if path.startswith("/v2/") else "option" if path.startswith(
            "/v1beta1/") else None
        if kind is None:
            await conn.close(1008, "unknown stream")
            return
        self.stats[f"{kind}_connections"] += 1
        await self._send(conn, [{"T": "success", "msg": "connected"}])
        try:
            auth = msgpack.unpackb(await asyncio.wait_for(conn.recv(), 10))
        except (TimeoutError, ConnectionClosed, ValueError):
            return
        error = None
        if (not isinstance(auth, dict) or auth.get("action") != "auth" or self.reject_key
                or auth.get("key") != self.key or auth.get("secret") != self.secret):
            error = (402, "auth failed")
        elif self._refuse_next > 0:
            self._refuse_next -= 1
            error = (406, "connection limit exceeded")
        elif kind in self._streams:
            error = (406, "connection limit exceeded")
        elif self.insufficient_subscription:
            error = (409, "insufficient subscription")
        if error is not None:
            self.stats[f"refused_{error[0]}"] += 1
            await self._send(conn, [{"T": "error", "code": error[0], "msg": error[1]}])
            await conn.close()
            return
        self._streams[kind] = conn
        self.stats[f"{kind}_authenticated"] += 1
        await self._send(conn, [{"T": "success", "msg": "authenticated"}])
        subs: dict[str, set[str]] = {"trades": set(), "quotes": set(), "bars": set(),
                                     "updatedBars": set()}
        pump = asyncio.create_task(self._pump(conn, kind, subs))
        try:
            async for raw in conn:
                try:
                    msg = msgpack.unpackb(raw if isinstance(raw, bytes) else raw.encode())
                except ValueError:
                    continue
                action = msg.get("action") if isinstance(msg, dict) else None
                if action in ("subscribe", "unsubscribe"):
                    for channel, symbols in subs.items():
                        wanted = set(msg.get(channel) or ())
                        if action == "subscribe":
                            symbols |= wanted
                        else:
                            symbols -= wanted
                    self.stats[f"{kind}_subscribe"] += 1
                    await self._send(conn, [{"T": "subscription",
                                             **{c: sorted(s) for c, s in subs.items()}}])
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            if self._streams.get(kind) is conn:
                del self._streams[kind]
            self._garbage.pop(conn, None)

    async def _pump(self, conn: ServerConnection, kind: str, subs: dict[str, set[str]]) -> None:
        last_minute = self.now_ns() // NS_MIN
        last_updated = last_minute  # the first minute whose updated bar is not sent yet
        try:
            while True:
                await asyncio.sleep(self.tick_interval_s)
                for _ in range(self._garbage.pop(conn, 0)):
                    await conn.send(GARBAGE_FRAMES[self.stats["garbage"] % len(GARBAGE_FRAMES)])
                    self.stats["garbage"] += 1
                now = self.now_ns()
                minute = now // NS_MIN
                updated = (now - UPDATED_BAR_DELAY_NS) // NS_MIN  # minutes now final
                if time.monotonic() < self._silent_until:
                    last_minute = minute  # bars of silent minutes are lost, like a dead link
                    last_updated = max(last_updated, updated)
                    continue
                stamp = msgpack.Timestamp.from_unix_nano(now)
                messages: list[dict[str, Any]] = []
                for symbol in sorted(subs["quotes"]):
                    bid, ask = self._quote(kind, symbol, now / NS_MIN)
                    messages.append({"T": "q", "S": symbol, "bp": bid, "bs": 3, "ap": ask,
                                     "as": 4, "bx": "V", "ax": "V", "c": ["R"], "z": "C",
                                     "t": stamp})
                for symbol in sorted(subs["trades"]):
                    bid, ask = self._quote(kind, symbol, now / NS_MIN)
                    messages.append({"T": "t", "S": symbol, "p": round((bid + ask) / 2, 4),
                                     "s": 100, "x": "V", "i": self.stats["trades"], "c": ["@"],
                                     "z": "C", "t": stamp})
                    self.stats["trades"] += 1
                for m in range(last_minute, minute):
                    for symbol in sorted(subs["bars"]):
                        messages.append({"T": "b", "S": symbol, **first_bar_at(symbol, m),
                                         "t": msgpack.Timestamp.from_unix_nano(m * NS_MIN)})
                        self.bars_streamed[symbol] += 1
                for m in range(last_updated, updated):
                    for symbol in sorted(subs["updatedBars"]):
                        messages.append({"T": "u", "S": symbol, **bar_at(symbol, m),
                                         "t": msgpack.Timestamp.from_unix_nano(m * NS_MIN)})
                        self.stats["updated_bars"] += 1
                last_minute = minute
                last_updated = max(last_updated, updated)
                if messages:
                    await self._send(conn, messages)
                    self.stats[f"{kind}_messages"] += len(messages)
        except (ConnectionClosed, asyncio.CancelledError):
            return

    def _quote(self, kind: str, symbol: str, minute: float) -> tuple[float, float]:
        if kind == "option":
            return self.option_price(symbol, minute)
        p = price_at(symbol, minute)
        return round(p - 0.01, 4), round(p + 0.01, 4)
