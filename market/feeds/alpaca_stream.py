"""Drive one alpaca-py data stream inside the running event loop, with real backoff.

alpaca-py's ``run()`` owns its own event loop and its reconnect loop neither
stops on bad credentials nor tells anyone. :class:`StreamRunner` keeps the
SDK's connection, login and subscription code (``_start_ws``,
``_send_subscribe_msg``, ``_dispatch``) but runs the loop itself:

* reconnects with jittered exponential backoff (``backoff_initial_s`` doubling
  to ``backoff_max_s``, each delay drawn from [d/2, d]); a 406 "connection
  limit exceeded" backs off the same way;
* a login refused for bad keys (402/401/403) or "insufficient subscription"
  (409) is *fatal*: the error is kept for ``/health`` and logged once, and the
  login is retried only every ``fatal_retry_s``;
* a connection that delivers no market data for ``silence_s`` while
  ``market_open()`` says so is closed and reopened;
* frames that are not msgpack arrays, and messages of unknown type or for
  symbols not subscribed, are counted and dropped;
* after every reconnect ``on_reconnect(gap_start_ns)`` runs once the server has
  acknowledged the subscription (or sent data), so the feed can backfill what the gap
  lost: a minute that closed before then is in the backfill, any later one is streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgpack
from alpaca.data.live.websocket import DataStream

log = logging.getLogger(__name__)
# "u": a minute bar corrected after late trades (Alpaca sends it about 30 s after the minute).
DATA_TYPES = {"t": "trades", "q": "quotes", "b": "bars", "u": "updatedBars"}
FATAL_MARKERS = ("auth failed", "not authenticated", "forbidden", "insufficient subscription",
                 "unauthorized", "invalid key")


class SilentConnection(Exception):
    """No market data arrived for the silence timeout while the market was open."""


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Return the wait before reconnect ``attempt`` (1-based): equal-jitter exponential."""
    capped = min(max_s, initial_s * 2 ** max(0, attempt - 1))
    return rng.uniform(capped / 2, capped)


class StreamRunner:
    """One upstream connection (stock or option stream) with its subscriptions."""

    def __init__(
        self,
        name: str,
        stream: DataStream,
        on_message: Callable[[dict[str, Any]], bool],
        *,
        on_reconnect: Callable[[int], Coroutine[Any, Any, None]] | None = None,
        silence_s: float = 30.0,
        market_open: Callable[[], bool] = lambda: True,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        fatal_retry_s: float = 300.0,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self.silence_s = silence_s
        self.market_open = market_open
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.fatal_retry_s = fatal_retry_s
        self._rng = random.Random(seed)
        self.wanted: dict[str, set[str]] = {channel: set() for channel in DATA_TYPES.values()}
        self.connected = False
        self.error: str | None = None
        self.fatal = False
        self.connects = 0
        self.reconnects = 0
        self.messages = 0
        self.dropped: Counter[str] = Counter()
        self.last_message_ns: int | None = None
        self.last_delay_s = 0.0
        self._stopping = False
        self._wake = asyncio.Event()
        self._handler_cache: Callable[[Any], Awaitable[None]] | None = None
        self._session_data = False
        self._gap_to_fill: int | None = None  # a reconnect's gap start, until subscribed
        self._idle = False

    # Subscriptions.

    async def set_wanted(self, wanted: dict[str, set[str]]) -> None:
        """Replace the subscription set; sends the change at once when connected."""
        old = {k: set(v) for k, v in self.wanted.items()}
        self.wanted = {k: set(wanted.get(k, ())) for k in self.wanted}
        self._install_handlers()
        if not self.connected or self.stream._ws is None:
            # Wake the loop only if it idles for lack of subscriptions, never out of a
            # backoff or fatal wait (that would turn interest changes into a retry storm).
            if self._idle and any(self.wanted.values()):
                self._wake.set()
            return
        removed = {k: sorted(old[k] - self.wanted[k]) for k in old}
        try:
            for channel, symbols in removed.items():
                if symbols:
                    await self.stream._send_unsubscribe_msg(channel, symbols)
            if any(self.wanted[k] - old[k] for k in old):
                await self.stream._send_subscribe_msg()
        except Exception as exc:  # noqa: BLE001 - the reconnect path resubscribes everything
            log.warning("%s stream: subscription update failed: %s", self.name, exc)

    def _install_handlers(self) -> None:
        async def handler(message: Any) -> None:
            if self.on_message(message):
                self.messages += 1
            else:
                self.dropped["rejected"] += 1

        handle = self._handler_cache or handler
        self._handler_cache = handle
        for channel, symbols in self.wanted.items():
            self.stream._handlers[channel] = dict.fromkeys(symbols, handle)

    # The connection loop.

    async def run(self) -> None:
        """Connect, subscribe and consume until :meth:`stop`; never raises."""
        attempt = 0
        gap_start: int | None = None
        while not self._stopping:
            if not any(self.wanted.values()):
                self._wake.clear()
                self._idle = True
                try:
                    await self._wake.wait()
                finally:
                    self._idle = False
                continue
            self._session_data = False
            try:
                await self.stream._start_ws()
                self.connects += 1
                self.connected = True
                self.error, self.fatal = None, False
                self.stream._running = True  # lets the SDK's subscribe helpers send
                await self.stream._send_subscribe_msg()
                log.info("%s stream connected (connection %d)", self.name, self.connects,
                         extra={"event": "feed.connected", "stream": self.name,
                                "connection": self.connects,
                                "reconnect": gap_start is not None})
                if gap_start is not None:
                    self.reconnects += 1
                    self._gap_to_fill = gap_start
                await self._consume()
            except SilentConnection:
                self.error = f"no data for {self.silence_s:.0f}s; reconnecting"
                log.warning("%s stream silent for %.1fs, reconnecting", self.name,
                            self.silence_s, extra={"event": "feed.reconnecting",
                                                   "stream": self.name, "reason": "silence"})
            except ValueError as exc:
                text = str(exc)
                if any(marker in text.lower() for marker in FATAL_MARKERS):
                    self._fatal(text)
                else:
                    self.error = f"login refused: {text}"
                    log.warning("%s stream: %s", self.name, self.error)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every transport failure reconnects
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("%s stream connection failed: %s", self.name, self.error,
                            extra={"event": "feed.reconnecting", "stream": self.name,
                                   "reason": type(exc).__name__})
            finally:
                if self.connected:
                    gap_start = self.last_message_ns or time.time_ns()
                self.connected = False
                self.stream._running = False
                with contextlib.suppress(Exception):
                    await self.stream.close()
            if self._stopping:
                break
            if self.fatal:
                await self._sleep(self.fatal_retry_s)
                continue
            attempt = 1 if self._session_data else attempt + 1
            self.last_delay_s = backoff_delay(attempt, self.backoff_initial_s,
                                              self.backoff_max_s, self._rng)
            await self._sleep(self.last_delay_s)

    def _fatal(self, text: str) -> None:
        hint = ("insufficient subscription: the account's data plan does not cover this feed "
                "(try MARKETRAY_ALPACA_FEED=iex)" if "subscription" in text.lower() else
                "authentication failed: check MARKETRAY_ALPACA_KEY_ID and "
                "MARKETRAY_ALPACA_SECRET_KEY")
        if not self.fatal:
            log.error("alpaca %s stream: %s (%s); retrying every %.0fs", self.name, hint, text,
                      self.fatal_retry_s)
        self.fatal = True
        self.error = hint

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _consume(self) -> None:
        ws = self.stream._ws
        assert ws is not None
        last_data = time.monotonic()
        while not self._stopping:
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                if time.monotonic() - last_data > self.silence_s and self.market_open():
                    raise SilentConnection from None
                continue
            try:
                messages = msgpack.unpackb(raw)
            except Exception:  # noqa: BLE001 - any undecodable frame is dropped
                self.dropped["undecodable_frame"] += 1
                continue
            if not isinstance(messages, list):
                self.dropped["not_an_array"] += 1
                continue
            for message in messages:
                if self._control(message):
                    continue
                channel = DATA_TYPES.get(message.get("T"))
                if channel is None or message.get("S") not in self.stream._handlers[channel]:
                    self.dropped["unexpected"] += 1
                    continue
                self._fill_gap()
                before = self.messages
                await self.stream._dispatch(message)
                if self.messages > before:
                    self._session_data = True
                    last_data = time.monotonic()
                    self.last_message_ns = time.time_ns()

    def _control(self, message: object) -> bool:
        """Handle control messages; return True when ``message`` is not market data."""
        if not isinstance(message, dict):
            self.dropped["not_a_map"] += 1
            return True
        kind = message.get("T")
        if kind == "subscription":
            self._fill_gap()
            return True
        if kind == "success":
            return True
        if kind == "error":
            text = f"{message.get('msg')} ({message.get('code')})"
            log.error("%s stream error: %s", self.name, text)
            self.error = text
            if any(marker in text.lower() for marker in FATAL_MARKERS):
                raise ValueError(str(message.get("msg")))
            return True
        return False

    def _fill_gap(self) -> None:
        """Start the reconnect hook once the subscription is in force on the server."""
        if self._gap_to_fill is None:
            return
        gap_start, self._gap_to_fill = self._gap_to_fill, None
        if self.on_reconnect is not None:
            task = asyncio.create_task(self.on_reconnect(gap_start))
            task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Stop the loop and close the connection."""
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(Exception):
            await self.stream.close()

    def status(self) -> dict[str, Any]:
        """Return this stream's health for ``/health``."""
        return {"connected": self.connected, "error": self.error, "fatal": self.fatal,
                "connects": self.connects, "reconnects": self.reconnects,
                "messages": self.messages, "dropped": dict(self.dropped),
                "subscribed": {k: len(v) for k, v in self.wanted.items()},
                "last_backoff_s": round(self.last_delay_s, 3)}


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("reconnect hook failed: %s", task.exception())
