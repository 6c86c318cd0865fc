"""How many frames the market hub may publish per poll, sized to its event loop's CPU.

The hub's event loop sends a poll's frames before the next poll wakes; a budget past
what it can send in its share of a poll cycle makes every cycle late and the next frames
older. So the budget follows the loop: it is cut when writers fall behind or a cycle's
own work overruns, scaled towards ``cpu_share`` of the cycle by the CPU the loop spent,
and grows slowly only while the budget, not the market, held frames back. Why half the
cycle, and what the alternatives measured, is in docs/performance.md (market data path).
"""

from __future__ import annotations

from dataclasses import dataclass

# A cycle whose own work (its fetch's wait for data aside) took more than this many poll
# intervals means the loop is saturated: sends, handshakes and REST all wait.
OVERRUN_INTERVALS = 2.0
# Unsent frames above this share of the budget mean the writers did not keep up.
BACKLOG_SHARE = 0.25
# The budget after a backlog or an overrun: a firm cut, so the next cycle is on time.
CUT_FACTOR = 0.7
# One poll shrinks the budget at most to this share for CPU over the loop's share...
MAX_SHRINK = 0.5
# ...and grows it at most by this factor, plus GROWTH_STEP frames so a tiny budget grows.
MAX_GROWTH = 1.25
GROWTH_STEP = 10.0
MIN_FRAMES = 1.0


@dataclass(slots=True)
class FrameBudget:
    """The frames one poll may publish; :meth:`adapt` once per poll, before publishing.

    ``poll_interval_s`` is the hub's shortest period between polls; ``cpu_share`` the
    share of a cycle the loop's own CPU work may take; ``frames`` starts the budget.
    """

    poll_interval_s: float
    cpu_share: float = 0.5
    frames: float = 2_000.0
    max_frames: float = 200_000.0

    def adapt(self, *, backlog: int, waiting: bool, cycle_s: float | None = None,
              cpu_s: float | None = None, idle_s: float = 0.0) -> None:
        """Resize the budget from the previous cycle.

        ``backlog``: frames still unsent (not sent within one poll interval).
        ``waiting``: symbols changed but unpublished (the budget may have held them).
        ``cycle_s``: seconds since the previous poll began (None on the first poll).
        ``cpu_s``: CPU seconds the loop's thread spent in that cycle.
        ``idle_s``: seconds of that cycle the fetch spent, mostly waiting for the shards'
        next ingest; it is time to spend, not an overrun. The cycle counts as at least the
        interval and at most the interval plus ``idle_s``: a poll that follows the feed's
        batches has their period to spend, a late one only the interval.
        """
        interval = self.poll_interval_s
        overrun = cycle_s is not None and cycle_s - idle_s > OVERRUN_INTERVALS * interval
        if backlog > BACKLOG_SHARE * self.frames or overrun:
            self.frames = max(MIN_FRAMES, self.frames * CUT_FACTOR)
            return
        period = max(interval, min(cycle_s or 0.0, interval + idle_s))
        room = MAX_GROWTH if not cpu_s else self.cpu_share * period / cpu_s
        if room < 1:
            self.frames = max(MIN_FRAMES, self.frames * max(MAX_SHRINK, room))
        elif backlog == 0 and waiting:
            self.frames = min(self.max_frames,
                              self.frames * min(MAX_GROWTH, room) + GROWTH_STEP)
