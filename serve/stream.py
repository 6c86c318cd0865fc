"""Market WebSocket fan-out: one poll loop per replica, one writer per client.

At most every ``poll_interval_s`` the hub asks each shard for the subscribed
symbols that changed, and for the snapshots of those it can publish this poll:
all of them when the budget covers every subscription, else about as many as
the budget allows, those that have waited longest first. The fetch is a long
poll: a shard with nothing newer holds it until its next ingest (up to one
interval), so polls follow the feed's batches and a tick waits for no timer.
The hub then publishes the waiting symbols whose data this poll fetched, oldest
first, each encoded once, up to a frame budget per poll: a symbol with 100
subscribers costs 100 frames.
Every client has a pending map keyed by (symbol, channel): a new frame replaces
an unsent one, so a slow reader gets the latest value per symbol (conflation)
and never holds up the others; its writer task sends whatever is pending.

The budget adapts to what the event loop can send. It is sized so that the
loop's own CPU time per poll cycle stays within ``cpu_share`` of the cycle
(the loop sends a poll's frames before the next poll wakes: a budget past that
share made every cycle late, and the next frames older); it grows while the
loop has time to spare and the writers drain everything between polls, and it
shrinks while frames are left over or a cycle's work overruns twice the interval.
Under a large fan-out each symbol is then published less often, but every
published frame carries the symbol's state fetched in that poll and goes out at
once, so latency stays bounded. Oldest-first order means no symbol, and so no
client, starves.

``stats()`` reports the age of the published data (publish time minus the
snapshot's timestamp, its newest tick) over the last 2,048 published symbols:
the server's share of what a client measures. For a quiet symbol it includes the
time since its last tick, which is as long as its gap between ticks on average.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import statistics
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from fastapi import WebSocket

from actors.sharding import shard_of
from market.shard import ChainFilter
from serve.frame_budget import FrameBudget

log = logging.getLogger("marketray.stream")
CHANNELS = ("market", "options")
AGE_SAMPLES = 2_048  # published symbols whose data age stats() summarises


class Subscriber:
    """One WebSocket client: its subscriptions and its conflating outbox."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        self.pending: dict[tuple[str, str], str] = {}
        self.in_flight = 0  # taken from pending by the writer, not yet sent
        self.wakeup = asyncio.Event()
        self.sent = 0
        self.conflated = 0

    @property
    def unsent(self) -> int:
        """Frames queued for this client that the writer has not sent yet."""
        return len(self.pending) + self.in_flight

    def offer(self, key: tuple[str, str], frame: str) -> None:
        """Queue ``frame``, replacing an unsent frame for the same symbol and channel."""
        if key in self.pending:
            self.conflated += 1
        self.pending[key] = frame
        self.wakeup.set()

    async def send_now(self, message: dict[str, Any]) -> None:
        """Send a control frame (subscribed, pong, error) immediately."""
        await self.websocket.send_text(orjson.dumps(message).decode())

    async def writer(self) -> None:
        """Send pending frames until the connection closes."""
        send = self.websocket.send_text
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            frames, self.pending = self.pending, {}
            self.in_flight = len(frames)
            for frame in frames.values():
                await send(frame)
                self.in_flight -= 1
                self.sent += 1


class MarketHub:
    """Polls shards for subscribed symbols and fans frames out to subscribers."""

    def __init__(self, gateway: Any, *, poll_interval_s: float = 0.015,
                 options_interval_s: float = 1.0, initial_budget: int = 2_000,
                 max_budget: int = 200_000, cpu_share: float = 0.5) -> None:
        self.gateway = gateway
        self.poll_interval_s = poll_interval_s
        self.options_interval_s = options_interval_s
        self.frame_budget = FrameBudget(poll_interval_s, cpu_share, float(initial_budget),
                                        float(max_budget))
        self.subscribers: set[Subscriber] = set()
        # channel -> symbol -> subscribers: publishing touches only the interested clients.
        self.audience: dict[str, dict[str, set[Subscriber]]] = {
            c: defaultdict(set) for c in CHANNELS}
        self.sequence: Counter[str] = Counter()
        self.latest: dict[str, dict[str, Any]] = {}  # symbol -> newest polled MarketData
        self._waiting: dict[str, None] = {}  # changed, unpublished symbols, oldest first
        self._fresh: set[str] = set()  # waiting symbols whose ``latest`` is this poll's
        self._market_subscriptions = 0  # (client, symbol) pairs on the market channel
        self._since: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._options_task: asyncio.Task[None] | None = None
        self.polls = 0
        self._fetch_s = 0.0  # how long the last poll's fetch took, waiting for data included
        self.errors = 0
        self.published = 0
        self.departed_sent = self.departed_conflated = 0  # frames of clients that left
        self._ages_ms: deque[float] = deque(maxlen=AGE_SAMPLES)

    @property
    def budget(self) -> float:
        """Frames one poll may publish (:class:`serve.frame_budget.FrameBudget`)."""
        return self.frame_budget.frames

    @budget.setter
    def budget(self, frames: float) -> None:
        self.frame_budget.frames = frames

    def ensure_running(self) -> None:
        """Start the poll loops on the current event loop (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll_market())
        if self._options_task is None or self._options_task.done():
            self._options_task = asyncio.get_running_loop().create_task(self._poll_options())

    def add(self, subscriber: Subscriber) -> None:
        """Register a connected client."""
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a client and release its subscriptions."""
        if subscriber in self.subscribers:  # keep its counts in the hub's totals (metrics)
            self.departed_sent += subscriber.sent
            self.departed_conflated += subscriber.conflated
        self.subscribers.discard(subscriber)
        for symbol, channels in list(subscriber.subscriptions.items()):
            self.unsubscribe(subscriber, [symbol], list(channels))

    def subscribe(self, subscriber: Subscriber, symbols: Iterable[str],
                  channels: Iterable[str]) -> None:
        """Add subscriptions (idempotent per symbol and channel)."""
        for symbol in symbols:
            for channel in channels:
                subscriber.subscriptions[symbol].add(channel)
                audience = self.audience[channel][symbol]
                if channel == "market" and subscriber not in audience:
                    self._market_subscriptions += 1
                audience.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, symbols: Iterable[str],
                    channels: Iterable[str]) -> None:
        """Remove subscriptions; unknown ones are ignored."""
        for symbol in symbols:
            held = subscriber.subscriptions.get(symbol, set())
            for channel in channels:
                if channel not in held:
                    continue
                held.discard(channel)
                audience = self.audience[channel].get(symbol)
                if audience is not None and subscriber in audience:
                    audience.discard(subscriber)
                    if channel == "market":
                        self._market_subscriptions -= 1
                    if not audience:
                        del self.audience[channel][symbol]
                        if channel == "market":  # unpolled from now on: forget, not go stale
                            self.latest.pop(symbol, None)
                            self._waiting.pop(symbol, None)
                            self._fresh.discard(symbol)
                subscriber.pending.pop((symbol, channel), None)
            if not held:
                subscriber.subscriptions.pop(symbol, None)

    def market_frame(self, symbol: str, data: dict[str, Any]) -> str:
        """Encode a market frame with the symbol's next sequence number."""
        self.sequence[symbol] += 1
        return orjson.dumps({"type": "market", "seq": self.sequence[symbol],
                             "data": data}).decode()

    def _publish(self, symbol: str, channel: str, frame: str) -> None:
        for subscriber in self.audience[channel].get(symbol, ()):
            subscriber.offer((symbol, channel), frame)

    def note_changed(self, symbols: Iterable[str]) -> None:
        """Queue changed symbols for publishing (once each, keeping their place)."""
        for symbol in symbols:
            self._waiting.setdefault(symbol, None)

    def record_changes(self, changed: dict[str, dict[str, Any]]) -> None:
        """Keep fetched data of changed symbols; they queue for publishing once."""
        self.latest.update(changed)
        self._fresh.update(changed)
        self.note_changed(changed)

    def fetch_plan(self) -> tuple[list[str], int | None]:
        """Return the waiting symbols to fetch first and how many snapshots to fetch.

        None: no limit, every waiting and changed symbol (the budget covers every
        subscription). Otherwise about as many symbols as the budget can publish at
        the mean audience size.
        """
        subscriptions = self._market_subscriptions
        if subscriptions <= self.budget:
            return list(self._waiting), None
        limit = max(1, math.ceil(self.budget * len(self.audience["market"]) / subscriptions))
        return list(self._waiting)[:limit], limit

    def publish_due(self) -> int:
        """Publish fetched waiting symbols, oldest first, within the frame budget; return frames.

        A waiting symbol whose data this poll did not fetch keeps its place for later.
        """
        audience = self.audience["market"]
        frames = 0
        for symbol in list(self._waiting):
            if not self._fresh:  # every fetched symbol is out
                break
            if symbol not in self._fresh:
                continue
            listeners = len(audience.get(symbol, ()))
            if listeners and frames and frames + listeners > self.budget:
                break
            del self._waiting[symbol]
            self._fresh.discard(symbol)
            if listeners:
                data = self.latest[symbol]
                self._note_age(data.get("timestamp"))
                self._publish(symbol, "market", self.market_frame(symbol, data))
                frames += listeners
        self.published += frames
        return frames

    def _note_age(self, stamp: Any) -> None:
        """Keep how old a published snapshot's newest tick is (ISO-8601 ``timestamp``).

        Once per published symbol, not per frame: parsing the timestamp costs less than
        encoding the symbol's frame once.
        """
        if not isinstance(stamp, str):  # no tick yet
            return
        try:
            ticked = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            return
        self._ages_ms.append((time.time() - ticked) * 1e3)

    def adapt(self, cycle_s: float | None = None, cpu_s: float | None = None,
              idle_s: float = 0.0) -> None:
        """Size the budget to what the event loop sends in its share of a poll cycle.

        Called before a poll publishes, with the previous cycle's length ``cycle_s``, the
        loop thread's CPU ``cpu_s`` in it and ``idle_s``, the time its fetch took (mostly
        waiting for the shards' next ingest); :meth:`FrameBudget.adapt` has the rule.
        Frames still unsent now were not sent within one poll interval.
        """
        self.frame_budget.adapt(backlog=sum(s.unsent for s in self.subscribers),
                                waiting=bool(self._waiting), cycle_s=cycle_s, cpu_s=cpu_s,
                                idle_s=idle_s)

    async def poll_once(self, cycle_s: float | None = None, cpu_s: float | None = None) -> int:
        """One poll: fetch changes from the shards, adapt the budget, publish; return frames.

        ``cycle_s`` and ``cpu_s`` describe the previous cycle, whose fetch was the previous
        poll's (see :meth:`adapt`).
        """
        shards = self.gateway.actors.shards
        self._fresh.clear()  # only data fetched by this poll is published
        wanted: dict[int, list[str]] = defaultdict(list)
        for symbol in self.audience["market"]:
            wanted[shard_of(symbol, len(shards))].append(symbol)
        first, limit = self.fetch_plan()
        first_of: dict[int, list[str]] = defaultdict(list)
        for symbol in first:
            first_of[shard_of(symbol, len(shards))].append(symbol)
        refs = {k: shards[k].market_changes.remote(self._since.get(k, 0), symbols,
                                                   first_of[k], limit,
                                                   wait_s=self.poll_interval_s)
                for k, symbols in wanted.items()}
        fetching = time.monotonic()
        for k, ref in refs.items():
            try:
                sequence, changed, data = await ref
            except Exception:  # a restarting shard: skip this round, retry next
                self.errors += 1
                continue
            self._since[k] = sequence
            self.note_changed(changed)
            self.record_changes(data)
        # the cycle adapt() judges (since the previous poll began) held the previous fetch
        idle_s, self._fetch_s = self._fetch_s, time.monotonic() - fetching
        self.adapt(cycle_s, cpu_s, idle_s)
        self.polls += 1
        return self.publish_due()

    async def _poll_market(self) -> None:
        loop = asyncio.get_running_loop()
        previous: float | None = None
        previous_cpu = time.thread_time()  # this thread runs the loop: its CPU is the loop's
        while True:
            started, cpu = loop.time(), time.thread_time()
            cycle_s, previous = (None if previous is None else started - previous), started
            cpu_s, previous_cpu = cpu - previous_cpu, cpu
            await self.poll_once(cycle_s, cpu_s)
            await asyncio.sleep(max(0.0, self.poll_interval_s - (loop.time() - started)))

    async def _poll_options(self) -> None:
        shards = self.gateway.actors.shards
        while True:
            await asyncio.sleep(self.options_interval_s)
            for symbol in list(self.audience["options"]):
                shard = shards[shard_of(symbol, len(shards))]
                try:
                    body = await shard.chain_json.remote(symbol, ChainFilter())
                except Exception:  # no chain or restarting shard: nothing to send
                    self.errors += 1
                    continue
                self.sequence[f"options:{symbol}"] += 1
                seq = self.sequence[f"options:{symbol}"]
                frame = b'{"type":"options","seq":%d,"data":%s}' % (seq, body)
                self._publish(symbol, "options", frame.decode())

    async def close(self) -> None:
        """Stop the poll loops."""
        for task in (self._task, self._options_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def stats(self) -> dict[str, Any]:
        """Counters for /health."""
        ages = sorted(self._ages_ms)
        age = ({"p50": round(statistics.median(ages), 1),
                "p99": round(ages[min(len(ages) - 1, int(0.99 * len(ages)))], 1),
                "samples": len(ages)} if ages else None)
        return {"clients": len(self.subscribers), "polls": self.polls, "errors": self.errors,
                "published_age_ms": age,
                "frame_budget": round(self.budget), "frames_published": self.published,
                "symbols_waiting": len(self._waiting),
                "frames_sent": sum(c.sent for c in self.subscribers),
                "frames_conflated": sum(c.conflated for c in self.subscribers),
                "symbols": len(self.audience["market"]) + len(self.audience["options"])}
