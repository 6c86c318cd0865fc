"""Market WebSocket fan-out: one poll loop per replica, one writer per client.

The hub polls each shard for the symbols anyone subscribed to and encodes
each changed symbol's frame once. Every client has a pending map keyed by
(symbol, channel): a new frame replaces an unsent one, so a slow reader gets
the latest value per symbol (conflation) and never holds up the others; its
writer task sends whatever is pending.

The poll interval adapts to load: when the writers still hold unsent frames
at poll time (the event loop cannot send as fast as symbols change), the hub
polls less often (up to ``max_poll_interval_s``), and it speeds back up to
``poll_interval_s`` when they keep up. Clients then get fewer updates per
symbol, never older ones: latency stays bounded as the fan-out grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import WebSocket

from actors.sharding import shard_of
from market.shard import ChainFilter

log = logging.getLogger("marketray.stream")
CHANNELS = ("market", "options")


class Subscriber:
    """One WebSocket client: its subscriptions and its conflating outbox."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        self.pending: dict[tuple[str, str], bytes] = {}
        self.wakeup = asyncio.Event()
        self.sent = 0
        self.conflated = 0

    def offer(self, key: tuple[str, str], frame: bytes) -> None:
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
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            frames, self.pending = self.pending, {}
            for frame in frames.values():
                await self.websocket.send_text(frame.decode())
                self.sent += 1


class MarketHub:
    """Polls shards for subscribed symbols and fans frames out to subscribers."""

    def __init__(self, gateway: Any, *, poll_interval_s: float = 0.025,
                 max_poll_interval_s: float = 2.0, options_interval_s: float = 1.0) -> None:
        self.gateway = gateway
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.interval_s = poll_interval_s  # the current, adaptive, poll interval
        self.options_interval_s = options_interval_s
        self.subscribers: set[Subscriber] = set()
        # channel -> symbol -> subscribers: publishing touches only the interested clients.
        self.audience: dict[str, dict[str, set[Subscriber]]] = {
            c: defaultdict(set) for c in CHANNELS}
        self.sequence: Counter[str] = Counter()
        self._since: dict[int, int] = {}
        self._chain_versions: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._options_task: asyncio.Task[None] | None = None
        self.polls = 0
        self.errors = 0

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
        self.subscribers.discard(subscriber)
        for symbol, channels in list(subscriber.subscriptions.items()):
            self.unsubscribe(subscriber, [symbol], list(channels))

    def subscribe(self, subscriber: Subscriber, symbols: Iterable[str],
                  channels: Iterable[str]) -> None:
        """Add subscriptions (idempotent per symbol and channel)."""
        for symbol in symbols:
            for channel in channels:
                subscriber.subscriptions[symbol].add(channel)
                self.audience[channel][symbol].add(subscriber)

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
                if audience is not None:
                    audience.discard(subscriber)
                    if not audience:
                        del self.audience[channel][symbol]
                subscriber.pending.pop((symbol, channel), None)
            if not held:
                subscriber.subscriptions.pop(symbol, None)

    def market_frame(self, symbol: str, data: dict[str, Any]) -> bytes:
        """Encode a market frame with the symbol's next sequence number."""
        self.sequence[symbol] += 1
        return orjson.dumps({"type": "market", "seq": self.sequence[symbol], "data": data})

    def _publish(self, symbol: str, channel: str, frame: bytes) -> None:
        for subscriber in self.audience[channel].get(symbol, ()):
            subscriber.offer((symbol, channel), frame)

    async def _poll_market(self) -> None:
        shards = self.gateway.actors.shards
        while True:
            started = asyncio.get_running_loop().time()
            self._adapt()  # before publishing: what is still unsent since the last poll
            wanted: dict[int, list[str]] = defaultdict(list)
            for symbol in self.audience["market"]:
                wanted[shard_of(symbol, len(shards))].append(symbol)
            refs = {k: shards[k].market_changes.remote(self._since.get(k, 0), symbols)
                    for k, symbols in wanted.items()}
            for k, ref in refs.items():
                try:
                    sequence, changed = await ref
                except Exception:  # a restarting shard: skip this round, retry next
                    self.errors += 1
                    continue
                self._since[k] = sequence
                for symbol, data in changed.items():
                    self._publish(symbol, "market", self.market_frame(symbol, data))
            self.polls += 1
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, self.interval_s - elapsed))

    def _adapt(self) -> None:
        """Back off while writers lag behind, speed up again when they keep up.

        Called before a poll publishes: frames still pending then were not
        sent within one interval.
        """
        backlog = sum(len(s.pending) for s in self.subscribers)
        if backlog > len(self.subscribers):
            self.interval_s = min(self.max_poll_interval_s, self.interval_s * 1.5)
        elif backlog == 0:
            self.interval_s = max(self.poll_interval_s, self.interval_s * 0.8)

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
                self._publish(symbol, "options", frame)

    async def close(self) -> None:
        """Stop the poll loops."""
        for task in (self._task, self._options_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def stats(self) -> dict[str, Any]:
        """Counters for /health."""
        return {"clients": len(self.subscribers), "polls": self.polls, "errors": self.errors,
                "poll_interval_ms": round(self.interval_s * 1e3, 1),
                "frames_sent": sum(c.sent for c in self.subscribers),
                "frames_conflated": sum(c.conflated for c in self.subscribers),
                "symbols": len(self.audience["market"]) + len(self.audience["options"])}
