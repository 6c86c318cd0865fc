"""Run one feed: warm the shards up, stream its batches through a router (no Ray here).

One upstream connection per feed lives in a :class:`FeedRunner` (Alpaca refuses a
second one). Every batch the system ingests is written to the recorder first when one
is given (``MARKETRAY_RECORD``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from market.feeds.base import Feed
from market.feeds.recorder import TickRecorder
from market.feeds.router import FeedRouter

log = logging.getLogger("marketray.feed")


class FeedRunner:
    """Owns a feed, its recorder and the task that streams it into ``router``.

    Must be started and stopped inside one running event loop.
    """

    def __init__(self, feed: Feed, router: FeedRouter,
                 recorder: TickRecorder | None = None) -> None:
        self.feed = feed
        self.router = router
        self.recorder = recorder
        self.universe = tuple(feed.symbols)
        self.started = asyncio.Event()
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._interest: set[str] = set()

    @property
    def running(self) -> bool:
        """Whether the streaming task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self, *, resume: bool = False) -> dict[str, Any]:
        """Warm the shards up and start streaming (idempotent).

        Returns once every shard holds the warm-up, not just when it was sent. ``resume``:
        the feed restarted mid-run (its node died); the shards are first brought up to the
        last tick the lost feed routed (:meth:`FeedRouter.resume`).
        """
        if self._task is None:
            warm = await self.feed.warmup()
            if self.recorder is not None:
                self.recorder.write(warm, self.universe, warmup=True)
            await self.router.warm_up(warm, resume=resume)
            self._task = asyncio.get_running_loop().create_task(self._run())
            self.started.set()
            name = self.feed.status().name
            log.info("feed %s started", name,
                     extra={"event": "feed.started", "feed": name,
                            "symbols": len(self.universe),
                            "warm_bars": len(self.router.warm_bars)})
        return {"symbols": len(self.universe), "warm_bars": len(self.router.warm_bars)}

    async def _run(self) -> None:
        try:
            async for batch in self.feed.stream():
                if self.recorder is not None:
                    self.recorder.write(batch, self.universe)
                await self.router.forward(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the process alive and the failure visible on /health
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("feed stopped", extra={"event": "feed.failed", "error": self.error})

    async def set_interest(self, symbols: list[str]) -> None:
        """Pass the symbols clients subscribed to on to feeds that care (Alpaca)."""
        self._interest = set(symbols)
        hook = getattr(self.feed, "set_interest", None)
        if hook is not None:
            await hook(self._interest)

    def status(self) -> dict[str, Any]:
        """Feed health and routing counters."""
        st = self.feed.status()
        return {
            "name": st.name, "connected": st.connected, "last_message_ns": st.last_message_ns,
            "messages": st.messages, "dropped": st.dropped, "error": self.error or st.error,
            "detail": st.detail, "running": self.running,
            "seconds_since_batch": self.router.seconds_since_batch(),
            "recorded": None if self.recorder is None else self.recorder.rows_written,
            **self.router.counters,
        }

    async def stop(self) -> None:
        """Stop streaming, close the feed and finalise the recording."""
        if self._task is not None:
            self._task.cancel()
        await self.feed.close()
        if self.recorder is not None:
            self.recorder.close()  # finalises the Parquet files
