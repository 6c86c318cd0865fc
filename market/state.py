"""Per-symbol market state for the symbols one shard owns (no Ray here).

Hot path: :meth:`MarketState.apply` takes a :class:`TickBatch` and, in one
numba pass over the rows, updates last trade/quote, the session figures and
the forming 1-minute bar of each symbol, emitting every bar that closed. Closed
bars go through :class:`market.incremental.IndicatorBank` (O(1) per bar) and
into a fixed ring per symbol together with the indicator values as of their
close. Live indicators for the forming bar come from ``IndicatorBank.peek``,
computed only when someone reads the symbol.

Sessions split at 00:00 New York standard time (UTC-5): the first bar of a
session resets VWAP and the session volume/open/high/low.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import numba
import numpy as np
import numpy.typing as npt

from core.models import Bar, MarketData
from market.feeds.base import NS_PER_MINUTE, QUOTE, BarBatch, TickBatch
from market.incremental import INDICATOR_NAMES, IndicatorBank

SESSION_OFFSET_NS = 5 * 3600 * 1_000_000_000
NS_PER_DAY = 86_400 * 1_000_000_000
# Per-slot scalar state lives in one float64 matrix, columns in this order.
(LAST_PRICE, LAST_SIZE, BID, ASK, BID_SIZE, ASK_SIZE, SESSION_VOLUME, DAY_OPEN, DAY_HIGH,
 DAY_LOW, PREVIOUS_CLOSE, BAR_OPEN, BAR_HIGH, BAR_LOW, BAR_CLOSE, BAR_VOLUME) = range(16)
N_STATE = 16
# Columns of the (n, 5) bar matrices the kernels write and read: the forming bar's order.
OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
N_OHLCV = 5


@numba.njit(cache=True)
def _session_of(ts: int) -> int:
    return (ts - SESSION_OFFSET_NS) // NS_PER_DAY


@numba.njit(cache=True)
def _start_bar(s: int, minute: int, p: float, state: npt.NDArray[np.float64],
               bar_start: npt.NDArray[np.int64], anchor: npt.NDArray[np.int64],
               needs_reset: npt.NDArray[np.bool_], reset_done: npt.NDArray[np.bool_]) -> None:
    # ``anchor`` is the start of the symbol's latest bar, closed, seeded or forming.
    new_session = anchor[s] == 0 or _session_of(minute) != _session_of(anchor[s])
    if new_session:
        if anchor[s] > 0:
            # The previous close is the last trade before this session.
            state[s, PREVIOUS_CLOSE] = state[s, LAST_PRICE]
        state[s, SESSION_VOLUME] = 0.0
        state[s, DAY_OPEN] = p
        state[s, DAY_HIGH] = p
        state[s, DAY_LOW] = p
    # VWAP restarts before the first bar of a session that follows another one.
    needs_reset[s] = new_session and anchor[s] > 0
    reset_done[s] = False
    bar_start[s] = minute
    anchor[s] = minute
    state[s, BAR_OPEN] = p
    state[s, BAR_HIGH] = p
    state[s, BAR_LOW] = p
    state[s, BAR_CLOSE] = p
    state[s, BAR_VOLUME] = 0.0


@numba.njit(cache=True)
def _apply_ticks(
    kind: npt.NDArray[np.uint8], slot: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
    price: npt.NDArray[np.float64], size: npt.NDArray[np.float64],
    bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64],
    bid_size: npt.NDArray[np.float64], ask_size: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64], last_ts: npt.NDArray[np.int64],
    bar_start: npt.NDArray[np.int64], anchor: npt.NDArray[np.int64],
    needs_reset: npt.NDArray[np.bool_], reset_done: npt.NDArray[np.bool_],
    out_slot: npt.NDArray[np.int32], out_ts: npt.NDArray[np.int64],
    out_ohlcv: npt.NDArray[np.float64], out_reset: npt.NDArray[np.bool_],
) -> tuple[int, int]:
    """Apply ticks in row order; write closed bars to ``out_*``; return (closed, rejected).

    ``out_reset[i]`` says the indicator bank's session (VWAP) must be reset
    before committing closed bar ``i``.
    """
    n_closed = 0
    rejected = 0
    for i in range(len(kind)):
        s = slot[i]
        if s < 0:
            continue
        t = ts[i]
        if kind[i] == QUOTE:
            if bid[i] > 0.0 and ask[i] >= bid[i]:
                state[s, BID] = bid[i]
                state[s, ASK] = ask[i]
                state[s, BID_SIZE] = bid_size[i]
                state[s, ASK_SIZE] = ask_size[i]
                if t > last_ts[s]:
                    last_ts[s] = t
            else:
                rejected += 1
            continue
        p = price[i]
        q = size[i]
        if not (p > 0.0 and q >= 0.0 and p < 1e12):
            rejected += 1
            continue
        minute = t - t % NS_PER_MINUTE
        if minute > bar_start[s]:
            if bar_start[s] > 0:
                out_slot[n_closed] = s
                out_ts[n_closed] = bar_start[s]
                for j in range(N_OHLCV):
                    out_ohlcv[n_closed, j] = state[s, BAR_OPEN + j]
                out_reset[n_closed] = needs_reset[s] and not reset_done[s]
                n_closed += 1
            _start_bar(s, minute, p, state, bar_start, anchor, needs_reset, reset_done)
        elif minute < bar_start[s]:
            continue  # a late print for a bar already closed does not reopen it
        if t > last_ts[s]:
            last_ts[s] = t
        state[s, LAST_PRICE] = p
        state[s, LAST_SIZE] = q
        state[s, SESSION_VOLUME] += q
        state[s, DAY_HIGH] = max(state[s, DAY_HIGH], p)
        state[s, DAY_LOW] = min(state[s, DAY_LOW], p)
        state[s, BAR_HIGH] = max(state[s, BAR_HIGH], p)
        state[s, BAR_LOW] = min(state[s, BAR_LOW], p)
        state[s, BAR_CLOSE] = p
        state[s, BAR_VOLUME] += q
    return n_closed, rejected


class BarRing:
    """The newest ``capacity`` closed bars per slot with indicator values at each close."""

    def __init__(self, n_slots: int, capacity: int, n_indicators: int) -> None:
        self.capacity = capacity
        self.ts = np.zeros((n_slots, capacity), np.int64)
        self.ohlcv = np.full((n_slots, capacity, N_OHLCV), np.nan)
        self.indicators = np.full((n_slots, capacity, n_indicators), np.nan)
        self.count = np.zeros(n_slots, np.int64)  # total bars ever appended per slot

    def extend(self, slots: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
               ohlcv: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> None:
        """Append many bars; rows of one slot must be in time order (slots may interleave)."""
        if len(slots) == 0:
            return
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        rank = np.arange(len(order)) - np.repeat(starts, sizes)
        keep = rank >= np.repeat(sizes, sizes) - self.capacity  # only the newest per slot fit
        rows, s_kept = order[keep], s_sorted[keep]
        pos = (self.count[s_kept] + rank[keep]) % self.capacity
        self.ts[s_kept, pos] = ts[rows]
        self.ohlcv[s_kept, pos] = ohlcv[rows]
        self.indicators[s_kept, pos] = values[rows]
        self.count[s_sorted[starts]] += sizes

    def last_ts(self, slot: int) -> int:
        """Start time of the slot's newest bar, 0 when none."""
        n = self.count[slot]
        return int(self.ts[slot, (n - 1) % self.capacity]) if n else 0

    def window(self, slot: int, limit: int) -> tuple[npt.NDArray[np.int64],
                                                       npt.NDArray[np.float64],
                                                       npt.NDArray[np.float64]]:
        """Return (ts, ohlcv, indicators) of the newest ``limit`` bars, oldest first."""
        n = int(min(self.count[slot], self.capacity, limit))
        end = int(self.count[slot])
        idx = np.arange(end - n, end) % self.capacity
        return self.ts[slot, idx], self.ohlcv[slot, idx], self.indicators[slot, idx]

    def reset(self, slot: int) -> None:
        """Forget the slot's bars."""
        self.count[slot] = 0


@overload
def _session_day(ts_ns: int) -> int: ...
@overload
def _session_day(ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def _session_day(ts_ns: int | npt.NDArray[np.int64]) -> int | npt.NDArray[np.int64]:
    """The New York (standard time) calendar day of timestamps, as day numbers."""
    return (ts_ns - SESSION_OFFSET_NS) // NS_PER_DAY


def _to_datetime(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class MarketState:
    """Quotes, trades, bars and indicators of the symbols ``symbols``.

    ``universe`` is the feed's symbol list: tick ``symbol_id`` values index it,
    and rows of symbols not owned here are ignored.
    """

    def __init__(self, symbols: Sequence[str], universe: Sequence[str], *,
                 bar_capacity: int = 2_000) -> None:
        self.symbols = tuple(symbols)
        self.slot_of = {symbol: i for i, symbol in enumerate(self.symbols)}
        self._slot_by_id = np.full(len(universe), -1, np.int32)
        for universe_id, symbol in enumerate(universe):
            if symbol in self.slot_of:
                self._slot_by_id[universe_id] = self.slot_of[symbol]
        n = len(self.symbols)
        self.state = np.full((n, N_STATE), np.nan)
        self.state[:, SESSION_VOLUME] = 0.0
        self.last_ts = np.zeros(n, np.int64)
        self.bar_start = np.zeros(n, np.int64)  # forming bar's start, 0 when none
        self.anchor = np.zeros(n, np.int64)  # latest bar's start: closed, seeded or forming
        self.needs_reset = np.zeros(n, np.bool_)  # the forming bar starts a new session
        self.reset_done = np.zeros(n, np.bool_)  # ... and the bank was already reset for it
        self.version = np.zeros(n, np.int64)  # bumped whenever a slot changes
        self.bank = IndicatorBank(n)
        self.ring = BarRing(n, bar_capacity, len(INDICATOR_NAMES))
        self.ticks = 0
        self.rejected = 0
        self.closed = BarBatch.empty()  # bars closed by the last apply(), symbol_id = slot
        self.touched = np.empty(0, np.int64)
        self._sequence = 0
        self._out_cap = 0
        self._grow_out(1024)

    def _grow_out(self, capacity: int) -> None:
        self._out_cap = capacity
        self._out_slot = np.empty(capacity, np.int32)
        self._out_ts = np.empty(capacity, np.int64)
        self._out_ohlcv = np.empty((capacity, N_OHLCV))
        self._out_reset = np.empty(capacity, np.bool_)

    def slots_for(self, symbol_ids: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        """Map universe ids to local slots (-1 for symbols owned elsewhere)."""
        return self._slot_by_id[symbol_ids]

    def apply(self, batch: TickBatch) -> int:
        """Apply a batch of trades and quotes; return the number of bars that closed."""
        if len(batch) == 0:
            return 0
        if len(batch) > self._out_cap:
            self._grow_out(len(batch))
        slots = self.slots_for(batch.symbol_id)
        n_closed, rejected = _apply_ticks(
            batch.kind, slots, batch.ts_ns, batch.price, batch.size, batch.bid, batch.ask,
            batch.bid_size, batch.ask_size, self.state, self.last_ts, self.bar_start, self.anchor,
            self.needs_reset, self.reset_done, self._out_slot, self._out_ts, self._out_ohlcv,
            self._out_reset,
        )
        self.ticks += int(np.count_nonzero(slots >= 0))
        self.rejected += int(rejected)
        self._commit_bars(self._out_slot[:n_closed], self._out_ts[:n_closed],
                          self._out_ohlcv[:n_closed], self._out_reset[:n_closed])
        ohlcv = self._out_ohlcv[:n_closed]
        self.closed = BarBatch(symbol_id=self._out_slot[:n_closed].copy(),
                               ts_ns=self._out_ts[:n_closed].copy(), open=ohlcv[:, OPEN].copy(),
                               high=ohlcv[:, HIGH].copy(), low=ohlcv[:, LOW].copy(),
                               close=ohlcv[:, CLOSE].copy(), volume=ohlcv[:, VOLUME].copy())
        self._sequence += 1
        self.touched = np.unique(slots[slots >= 0])  # slots the last apply() changed
        self.version[self.touched] = self._sequence
        return int(n_closed)

    def _commit_bars(self, slots: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                     ohlcv: npt.NDArray[np.float64], reset: npt.NDArray[np.bool_], *,
                     undo: bool = True) -> None:
        """Commit closed bars in order, resetting VWAP before each session's first bar.

        ``undo`` keeps what each commit overwrote, so a vendor's bar can replace the
        newest one in place; bulk loads skip it (a quarter of their commit time).
        """
        start = 0
        for i in np.flatnonzero(reset):
            self._commit_range(slots, ts, ohlcv, start, int(i), undo)
            self.bank.reset_session(slots[i : i + 1])
            start = int(i)
        self._commit_range(slots, ts, ohlcv, start, len(slots), undo)
        # A session whose first bar is still forming: reset now so live peeks are right.
        pending = np.flatnonzero(self.needs_reset & ~self.reset_done)
        if len(pending):
            self.bank.reset_session(pending.astype(np.int32))
            self.reset_done[pending] = True

    def _commit_range(self, slots: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                      ohlcv: npt.NDArray[np.float64], start: int, stop: int,
                      undo: bool) -> None:
        if stop <= start:
            return
        s, t, v = slots[start:stop], ts[start:stop], ohlcv[start:stop]
        values = self.bank.update(s, v[:, HIGH].copy(), v[:, LOW].copy(), v[:, CLOSE].copy(),
                                  v[:, VOLUME].copy(), undo=undo)
        self.ring.extend(s, t, v, values)

    def at_or_after_forming(self, bars: BarBatch) -> npt.NDArray[np.bool_]:
        """Mark bars at or after their symbol's forming bar: live ticks still cover them."""
        slots = self.slots_for(bars.symbol_id)
        forming = np.where(slots >= 0, self.bar_start[slots], 0)
        return (forming > 0) & (bars.ts_ns >= forming)

    def load_bars(self, bars: BarBatch) -> int:
        """Merge completed bars (warm-up history or a backfill after a gap).

        Bars at or after a symbol's forming bar are ignored (live ticks cover
        them). Symbols whose bars are all newer than their newest held bar are
        appended in bulk. A single bar for the newest held minute (a vendor's bar
        for the minute the ticks just closed) replaces it in O(1)
        (:meth:`_replace_newest`). Any other bar in the past (filling a gap, or
        replacing an older minute) rebuilds that symbol's indicator series in
        time order. Returns the number of bars taken.
        """
        if len(bars) == 0:
            return 0
        slots = self.slots_for(bars.symbol_id)
        ohlcv = np.column_stack([bars.open, bars.high, bars.low, bars.close, bars.volume])
        order = np.lexsort((bars.ts_ns, slots))
        order = order[(slots[order] >= 0) & ~self.at_or_after_forming(bars)[order]]
        s, t = slots[order], bars.ts_ns[order]
        if len(order) == 0:
            return 0
        first = np.r_[True, s[1:] != s[:-1]]
        newest_held = self.ring.ts[s, (self.ring.count[s] - 1) % self.ring.capacity]
        newest_held[self.ring.count[s] == 0] = 0
        starts = np.flatnonzero(first)
        in_past = np.logical_or.reduceat(t <= newest_held, starts)
        sizes = np.diff(np.r_[starts, len(s)])
        newest = in_past & (sizes == 1) & (t[starts] == newest_held[starts])
        replaced = self._replace_newest(starts[newest], s, t, ohlcv[order])
        heads = s[starts]
        past_slots = heads[in_past & ~np.isin(heads, replaced)]
        append = ~np.isin(s, heads[in_past])
        self._append_bars(s[append], t[append], ohlcv[order[append]])
        for slot in past_slots:
            rows = s == slot
            self._rebuild(int(slot), t[rows], ohlcv[order[rows]])
        self._sequence += 1
        self.version[np.unique(s)] = self._sequence
        return int(len(order))

    def _replace_newest(self, rows: npt.NDArray[np.intp], s: npt.NDArray[np.int32],
                        t: npt.NDArray[np.int64], ohlcv: npt.NDArray[np.float64]
                        ) -> npt.NDArray[np.int32]:
        """Replace the newest held bar of the slots at ``rows`` in place; return those done.

        Only where live ticks have opened a later bar of the same session (the bank's
        last commit is that bar, no session reset came after it, and the session's
        running figures come from the ticks); other slots are left to :meth:`_rebuild`.
        """
        slots: npt.NDArray[np.int32] = s[rows]
        ts = t[rows]
        forming = self.bar_start[slots]
        ok = (forming > ts) & (_session_day(forming) == _session_day(ts))
        slots, bars = slots[ok], ohlcv[rows[ok]]
        if len(slots) == 0:
            return slots
        done, values = self.bank.replace_last(slots, bars[:, HIGH], bars[:, LOW],
                                              bars[:, CLOSE], bars[:, VOLUME])
        replaced: npt.NDArray[np.int32] = slots[done]
        position = (self.ring.count[replaced] - 1) % self.ring.capacity
        self.ring.ohlcv[replaced, position] = bars[done]
        self.ring.indicators[replaced, position] = values[done]
        return replaced

    def _append_bars(self, s: npt.NDArray[np.int32], t: npt.NDArray[np.int64],
                     ohlcv: npt.NDArray[np.float64]) -> None:
        """Append bars sorted by (slot, time), all newer than what each slot holds."""
        if len(s) == 0:
            return
        day = _session_day(t)
        held = self.ring.count[s] > 0
        prev_ts = np.where(held, self.ring.ts[s, (self.ring.count[s] - 1) % self.ring.capacity], 0)
        same_slot = np.r_[False, s[1:] == s[:-1]]
        prev_ts = np.where(same_slot, np.r_[0, t[:-1]], prev_ts)
        reset = (prev_ts > 0) & (day != _session_day(prev_ts))
        # Commit in time order across slots, split where a slot starts a new session.
        by_time = np.argsort(t, kind="stable")
        s, t, ohlcv, reset = s[by_time], t[by_time], ohlcv[by_time], reset[by_time]
        self._commit_bars(s, t, ohlcv, reset, undo=False)
        self._seed_sessions(s, t, ohlcv)

    def _rebuild(self, s: int, ts: npt.NDArray[np.int64], ohlcv: npt.NDArray[np.float64]) -> None:
        """Merge bars into the slot's history and recompute its indicators from scratch."""
        held_ts, held_ohlcv, _ = self.ring.window(s, self.ring.capacity)
        merged = dict(zip(held_ts.tolist(), held_ohlcv, strict=True))
        merged.update(zip(ts.tolist(), ohlcv, strict=True))
        self.bank.reset(np.array([s], np.int32))
        self.ring.reset(s)
        keys = sorted(merged)[-self.ring.capacity :]
        slot = np.full(len(keys), s, np.int32)
        times = np.array(keys, np.int64)
        rows = np.array([merged[k] for k in keys])
        day = _session_day(times)
        self._commit_bars(slot, times, rows, np.r_[False, day[1:] != day[:-1]], undo=False)
        if times[-1] >= self.last_ts[s]:
            self._seed_sessions(slot, times, rows)

    def _seed_sessions(self, s: npt.NDArray[np.int32], t: npt.NDArray[np.int64],
                       ohlcv: npt.NDArray[np.float64]) -> None:
        """Set last price and session figures of each slot from its newest seeded bars."""
        order = np.lexsort((t, s))
        s, t, ohlcv = s[order], t[order], ohlcv[order]
        day = _session_day(t)
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], len(s)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):  # one per slot
            slot, last = int(s[start]), end - 1
            if t[last] < self.last_ts[slot]:
                continue  # live data is newer than this history
            # Rows of the newest session are a suffix of the slot's time-sorted rows.
            day_start = start + int(np.searchsorted(day[start:end], day[last]))
            bars = ohlcv[day_start:end]
            st = self.state[slot]
            st[LAST_PRICE] = bars[-1, CLOSE]
            st[DAY_OPEN], st[DAY_HIGH] = bars[0, OPEN], bars[:, HIGH].max()
            st[DAY_LOW] = bars[:, LOW].min()
            st[SESSION_VOLUME] = bars[:, VOLUME].sum()
            if day_start > start:
                st[PREVIOUS_CLOSE] = ohlcv[day_start - 1, CLOSE]
            self.last_ts[slot] = t[last] + NS_PER_MINUTE - 1
            self.anchor[slot] = max(self.anchor[slot], t[last])

    def live_indicators(self, slot: int) -> dict[str, float | None]:
        """Indicators as of now: the forming bar treated as if it closed at the last price."""
        st = self.state[slot]
        if self.bar_start[slot] > 0:
            values = self.bank.peek(slot, st[BAR_HIGH], st[BAR_LOW], st[BAR_CLOSE],
                                    st[BAR_VOLUME])
        else:
            values = self.bank.values(slot)
        return {name: _finite(values[name]) for name in INDICATOR_NAMES}

    def snapshot(self, symbol: str) -> MarketData | None:
        """Return the symbol's :class:`MarketData`, or None before any data arrived."""
        s = self.slot_of[symbol]
        st = self.state[s]
        if not np.isfinite(st[LAST_PRICE]) or self.last_ts[s] == 0:
            return None
        previous = _finite(st[PREVIOUS_CLOSE])
        change = (st[LAST_PRICE] / previous - 1.0) * 100.0 if previous else None
        return MarketData(
            symbol=symbol, price=float(st[LAST_PRICE]), volume=float(st[SESSION_VOLUME]),
            timestamp=_to_datetime(int(self.last_ts[s])), indicators=self.live_indicators(s),
            bid=_finite(st[BID]), ask=_finite(st[ASK]), bid_size=_finite(st[BID_SIZE]),
            ask_size=_finite(st[ASK_SIZE]), open=_finite(st[DAY_OPEN]),
            high=_finite(st[DAY_HIGH]), low=_finite(st[DAY_LOW]), previous_close=previous,
            change_percent=change,
        )

    def bars(self, symbol: str, limit: int, *, include_forming: bool = False) -> list[Bar]:
        """Closed 1-minute bars, oldest first, with indicator values as of each close."""
        s = self.slot_of[symbol]
        ts, ohlcv, values = self.ring.window(s, limit)
        bars = [
            Bar(timestamp=_to_datetime(int(t)), open=float(o[OPEN]), high=float(o[HIGH]),
                low=float(o[LOW]), close=float(o[CLOSE]), volume=float(o[VOLUME]),
                **{name: _finite(v) for name, v in zip(INDICATOR_NAMES, row, strict=True)})
            for t, o, row in zip(ts, ohlcv, values, strict=True)
        ]
        if include_forming and self.bar_start[s] > 0:
            st = self.state[s]
            bars.append(Bar(timestamp=_to_datetime(int(self.bar_start[s])),
                            open=float(st[BAR_OPEN]), high=float(st[BAR_HIGH]),
                            low=float(st[BAR_LOW]), close=float(st[BAR_CLOSE]),
                            volume=float(st[BAR_VOLUME]), **self.live_indicators(s)))
        return bars[-limit:]

    def changed_since(self, version: int) -> list[str]:
        """Symbols updated after ``version`` (a value of :attr:`sequence`)."""
        return [self.symbols[i] for i in np.flatnonzero(self.version > version)]

    @property
    def sequence(self) -> int:
        """Monotonic update counter; pass it back to :meth:`changed_since`."""
        return self._sequence
