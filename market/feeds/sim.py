"""The market simulator: the service's default feed, deterministic under a seed.

Each period :meth:`SimulatedFeed.next_batch` advances every symbol's price
process (:mod:`market.feeds.sim_process`: stochastic variance, jumps, one
market factor) and draws the period's messages in a few vectorised numpy calls:

* stock quotes and trades, ``rate`` messages/s on average over a session,
  shaped by the U-shaped intraday profile (:mod:`market.feeds.sim_calendar`);
  each symbol's message prices follow a Brownian bridge between its period
  endpoints, so ticks inside a period are a consistent path, not one price;
  spreads widen with volatility and for cheap stocks; trade sizes are
  heavy-tailed round lots with some odd lots;
* option quotes and trades, ``option_rate`` messages/s, near the money and on
  short expiries, priced off a volatility surface (:mod:`market.feeds.sim_options`).

Same seed + same sequence of ``now_ns`` values → identical batches: the clock
is injectable (``clock``) and every draw comes from the feed's own generators.

Outside the regular session (09:30-16:00 New York, weekdays) the market is
quiet: 3% of the message rate and a near-still price. With ``always_open=True``
(the default, so a demo at night still moves) every moment outside the
session trades like an average session moment instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from market.feeds.base import (
    F64,
    I64,
    NS_PER_MINUTE,
    NS_PER_SECOND,
    QUOTE,
    TRADE,
    BarBatch,
    FeedBatch,
    FeedStatus,
    OptionContracts,
    OptionTickBatch,
    TickBatch,
)
from market.feeds.sim_calendar import (
    SESSION_MINUTES,
    TRADING_SECONDS_PER_YEAR,
    new_york_date,
    recent_sessions,
    session_bounds_ns,
    session_fraction,
    session_minutes_ns,
    volume_profile,
)
from market.feeds.sim_options import ChainSet, chain_snapshot, list_chains, option_ticks
from market.feeds.sim_process import ProcessParams, draw_params, step

if TYPE_CHECKING:
    from core.settings import Settings

OFF_HOURS_ACTIVITY = 0.03  # message rate outside the session, relative to `rate`
OFF_HOURS_PACE = 0.05  # price-clock speed outside the session (overnight is quiet)
OVERNIGHT_DAYS = 0.2  # overnight variance between sessions, in trading days


def trade_sizes(rng: np.random.Generator, count: int) -> F64:
    """Draw stock trade sizes: round lots (heavy-tailed number of lots), 25% odd lots."""
    lots = np.minimum(1.0 + np.floor(rng.pareto(1.5, count)), 500.0)
    odd = rng.integers(1, 100, count).astype(np.float64)
    choice = rng.random(count)
    size = np.where(choice < 0.25, odd, lots * 100.0)
    return np.asarray(np.where(choice > 0.93, size + odd, size), np.float64)


def _cents(log_price: F64) -> F64:
    return np.asarray(np.round(np.exp(log_price), 2), np.float64)


_MEAN_TRADE_SIZE = float(trade_sizes(np.random.default_rng(0), 400_000).mean())


class SimulatedFeed:
    """A simulated market of ``symbols`` and their option chains (implements ``Feed``).

    ``rate``/``option_rate`` are average messages per second over a regular
    session (the intraday profile moves the instantaneous rate around them).
    ``interval_ms`` is the period of :meth:`stream`. ``max_backlog_s`` bounds
    the messages drawn after a stall: for a longer gap the prices still move
    over the whole gap but only its last ``max_backlog_s`` (at least two
    periods) carries messages (the rest counts as ``dropped``). With
    ``market_factor=False`` the symbols' returns are independent (by default
    each loads on one market factor: index ETFs ~0.95, single names 0.3-0.7).
    ``clock`` returns UTC nanoseconds.
    """

    name = "sim"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        seed: int = 7,
        rate: float = 2_000.0,
        option_rate: float = 500.0,
        interval_ms: float = 20.0,
        risk_free_rate: float = 0.045,
        dividend_yield: float = 0.0,
        always_open: bool = True,
        warmup_sessions: int = 3,
        trade_fraction: float = 0.3,
        max_backlog_s: float = 2.0,
        market_factor: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not symbols:
            raise ValueError("the simulator needs at least one symbol")
        if rate < 0 or option_rate < 0 or interval_ms <= 0:
            raise ValueError("rates must be >= 0 and interval_ms > 0")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.seed = seed
        self.rate = rate
        self.option_rate = option_rate
        self.interval_ns = round(interval_ms * 1e6)
        self.risk_free_rate = risk_free_rate
        self.dividend_yield = dividend_yield
        self.always_open = always_open
        self.warmup_sessions = max(1, warmup_sessions)
        self.trade_fraction = trade_fraction
        self.max_backlog_ns = max(round(max_backlog_s * NS_PER_SECOND), 2 * self.interval_ns)
        self._clock = clock
        # Periods longer than this are drawn in pieces of about 200k messages (1-60 s).
        per_second = max(rate + option_rate, 1.0)
        self._emit_chunk_ns = round(min(max(200_000 / per_second, 1.0), 60.0) * NS_PER_SECOND)
        self.params: ProcessParams = draw_params(self.symbols, seed)
        if not market_factor:
            self.params.beta[:] = 0.0
        self._cumulative_activity = np.cumsum(self.params.activity)
        self._log_spot = np.log(self.params.spot)
        self._variance = self.params.variance.copy()
        self._rng = np.random.default_rng([seed, 2])
        self._last_ns: int | None = None
        self._chains: ChainSet | None = None
        self._closed = False
        self._messages = 0
        self._dropped = 0
        self._last_message_ns: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatedFeed:
        """Build the feed from :class:`core.settings.Settings` (``sim_*`` and pricing inputs)."""
        return cls(
            settings.symbols,
            seed=settings.sim_seed,
            rate=settings.sim_rate,
            option_rate=settings.sim_option_rate,
            interval_ms=settings.feed_interval_ms,
            risk_free_rate=settings.risk_free_rate,
            dividend_yield=settings.dividend_yield,
            always_open=bool(getattr(settings, "sim_always_open", True)),
        )

    # -- state --------------------------------------------------------------------------

    @property
    def spot(self) -> F64:
        """Return each symbol's current efficient (mid) price."""
        return np.asarray(np.exp(self._log_spot), np.float64)

    @property
    def variance(self) -> F64:
        """Return each symbol's current instantaneous variance (annual)."""
        return self._variance.copy()

    @property
    def chains(self) -> dict[str, OptionContracts]:
        """Return today's listed contracts per underlying (empty before the first batch)."""
        return {} if self._chains is None else dict(self._chains.contracts)

    def activity(self, start_ns: int, end_ns: int) -> tuple[float, float]:
        """Return (message-rate multiplier, price-clock pace) for a period."""
        fraction = session_fraction((start_ns + end_ns) // 2)
        if fraction is None:
            return (1.0, 1.0) if self.always_open else (OFF_HOURS_ACTIVITY, OFF_HOURS_PACE)
        multiplier = float(volume_profile(fraction))
        return multiplier, 0.5 + 0.5 * multiplier

    # -- live generation ----------------------------------------------------------------

    def next_batch(self, now_ns: int) -> FeedBatch:
        """Generate everything between the previous call (or warm-up) and ``now_ns``."""
        last = now_ns - self.interval_ns if self._last_ns is None else self._last_ns
        chains = self._roll_chains(now_ns)
        if now_ns <= last:
            return FeedBatch(TickBatch.empty(), OptionTickBatch.empty(), BarBatch.empty(), chains)
        backlog_start = now_ns - self.max_backlog_ns
        ticks: list[TickBatch] = []
        options: list[OptionTickBatch] = []
        if chains and self._chains is not None:
            # A new listing opens with a quote on every contract.
            options.append(
                chain_snapshot(
                    self._chains, last + 1, self.spot, self._variance, self.params,
                    self.risk_free_rate, self.dividend_yield, self._rng,
                )
            )
        start = last
        while start < now_ns:
            chunk = self._emit_chunk_ns if start >= backlog_start else 60 * NS_PER_SECOND
            end = min(now_ns, start + chunk)
            if start < backlog_start < end:
                end = backlog_start
            self._advance(start, end, start >= backlog_start, ticks, options)
            start = end
        self._last_ns = now_ns
        batch = FeedBatch(
            TickBatch.concat(ticks) if len(ticks) != 1 else ticks[0],
            OptionTickBatch.concat(options) if len(options) != 1 else options[0],
            BarBatch.empty(),
            chains,
        )
        count = len(batch.ticks) + len(batch.option_ticks)
        if count:
            self._messages += count
            self._last_message_ns = now_ns
        return batch

    def _roll_chains(self, now_ns: int) -> dict[str, OptionContracts]:
        day = new_york_date(now_ns)
        if self._chains is not None and self._chains.day == day:
            return {}
        self._chains = list_chains(
            self.symbols, self.spot, self.params, self._variance, day, now_ns, self.seed,
            self.risk_free_rate, self.dividend_yield,
        )
        return dict(self._chains.contracts)

    def _advance(
        self, start: int, end: int, emit: bool, ticks: list[TickBatch],
        options: list[OptionTickBatch],
    ) -> None:
        span = end - start
        activity, pace = self.activity(start, end)
        seconds = span / NS_PER_SECOND
        dt = seconds * pace / TRADING_SECONDS_PER_YEAR
        start_log_spot = self._log_spot.copy()
        moved = step(self.params, self._log_spot, self._variance, dt, self._rng)
        stock_count = int(self._rng.poisson(self.rate * activity * seconds))
        option_count = int(self._rng.poisson(self.option_rate * activity * seconds))
        if not emit:
            self._dropped += stock_count + option_count
            return
        if stock_count:
            ticks.append(
                self._stock_ticks(
                    stock_count, start, span, start_log_spot, moved.log_return,
                    moved.diffusion_std, moved.variance,
                )
            )
        if option_count and self._chains is not None:
            options.append(
                option_ticks(
                    self._chains, option_count, start, span, self.spot, self._variance,
                    self.params, self.risk_free_rate, self.dividend_yield, self._rng,
                )
            )

    def _stock_ticks(
        self, count: int, start: int, span: int, start_log_spot: F64, log_return: F64,
        diffusion_std: F64, variance: F64,
    ) -> TickBatch:
        rng = self._rng
        # Sorted draws make the lookup cache-friendly and leave symbols in order.
        draws = np.sort(rng.random(count)) * self._cumulative_activity[-1]
        symbol = np.searchsorted(self._cumulative_activity, draws, side="right")
        symbol = np.minimum(symbol, len(self.symbols) - 1).astype(np.int64)
        offset = rng.integers(0, span, count, dtype=np.int64)
        # One sort orders messages by (symbol, time): each symbol's path is a run.
        key = np.sort(symbol * span + offset)
        symbol, offset = key // span, key % span + 1
        u = offset / span
        first = np.empty(count, np.bool_)
        first[0] = True
        np.not_equal(symbol[1:], symbol[:-1], out=first[1:])
        previous = np.empty(count, np.float64)
        previous[0] = 0.0
        previous[1:] = u[:-1]
        previous[first] = 0.0
        increments = np.sqrt(u - previous) * rng.standard_normal(count)
        running = np.cumsum(increments)
        group = np.cumsum(first) - 1
        group_start = np.flatnonzero(first)
        brownian = running - (running[group_start] - increments[group_start])[group]
        last = np.append(group_start[1:] - 1, count - 1)
        end_value = brownian[last] + np.sqrt(1.0 - u[last]) * rng.standard_normal(len(last))
        bridge = brownian - u * end_value[group]
        log_mid = start_log_spot[symbol] + u * log_return[symbol] + diffusion_std[symbol] * bridge
        # From here on, rows in time order.
        order = np.argsort(offset)
        symbol = symbol[order]
        bid, ask = self._quote(np.exp(log_mid[order]), symbol, variance)
        trades = np.flatnonzero(rng.random(count) < self.trade_fraction)
        side = rng.random(len(trades))
        trade_bid, trade_ask = bid[trades], ask[trades]
        price = np.full(count, np.nan)
        price[trades] = np.where(
            side < 0.45, trade_bid, np.where(side < 0.9, trade_ask, (trade_bid + trade_ask) / 2.0)
        )
        size = np.full(count, np.nan)
        size[trades] = trade_sizes(rng, len(trades))
        quote_size = 100.0 * (1.0 + rng.geometric(0.35, (2, count)))
        bid[trades] = ask[trades] = quote_size[0, trades] = quote_size[1, trades] = np.nan
        kind = np.full(count, QUOTE, np.uint8)
        kind[trades] = TRADE
        return TickBatch(
            kind=kind, symbol_id=symbol.astype(np.int32), ts_ns=start + offset[order],
            price=price, size=size, bid=bid, ask=ask, bid_size=quote_size[0],
            ask_size=quote_size[1],
        )

    def _quote(self, mid: F64, symbol: I64, variance: F64) -> tuple[F64, F64]:
        """Return bid and ask around ``mid``: spreads widen with volatility and for cheap names."""
        vol = np.sqrt(variance[symbol])
        spread_dollars = mid * self.params.spread_bps[symbol] * 1e-4 * (vol / 0.25) * (
            1.0 + 10.0 / mid
        )
        extra = self._rng.random(len(mid)) < 0.2
        ticks_wide = np.maximum(1.0, np.rint(spread_dollars * 100.0)) + extra
        bid_cents = np.maximum(np.floor(mid * 100.0 - ticks_wide / 2.0 + 0.5), 1.0)
        return bid_cents / 100.0, (bid_cents + ticks_wide) / 100.0

    def _snapshot(self, ts_ns: int) -> tuple[TickBatch, OptionTickBatch]:
        """Return one quote per symbol and per listed contract at ``ts_ns``."""
        n = len(self.symbols)
        symbol = np.arange(n, dtype=np.int64)
        bid, ask = self._quote(self.spot, symbol, self._variance)
        nan = np.full(n, np.nan)
        sizes = 100.0 * (1.0 + self._rng.geometric(0.35, (2, n)))
        stock = TickBatch.from_columns(
            kind=np.full(n, QUOTE), symbol_id=symbol, ts_ns=np.full(n, ts_ns), price=nan,
            size=nan, bid=bid, ask=ask, bid_size=sizes[0], ask_size=sizes[1],
        )
        if self._chains is None:
            return stock, OptionTickBatch.empty()
        options = chain_snapshot(
            self._chains, ts_ns, self.spot, self._variance, self.params, self.risk_free_rate,
            self.dividend_yield, self._rng,
        )
        return stock, options

    # -- warm-up history ----------------------------------------------------------------

    def history(self, now_ns: int) -> FeedBatch:
        """Return the last sessions' 1-minute bars up to ``now_ns`` and today's chains.

        Restarts the process from the seed's starting state at the first warm-up
        session and leaves it at the last bar's close, where the live stream
        continues (``next_batch`` picks up at ``now_ns``).
        """
        rng = np.random.default_rng([self.seed, 1])
        self._rng = np.random.default_rng([self.seed, 2])  # the live stream restarts too
        params = self.params
        self._log_spot = np.log(params.spot)
        self._variance = params.variance.copy()
        n = len(self.symbols)
        bars: list[BarBatch] = []
        symbol_ids = np.arange(n, dtype=np.int32)
        shares_per_minute = (
            self.rate * self.trade_fraction * 60.0 * _MEAN_TRADE_SIZE * params.activity
        )
        for index, day in enumerate(recent_sessions(now_ns, self.warmup_sessions)):
            if index:
                step(params, self._log_spot, self._variance, OVERNIGHT_DAYS / 252, rng)
            session_open = session_bounds_ns(day)[0]
            for bar_start in session_minutes_ns(day, now_ns).tolist():
                minute = (bar_start - session_open) // NS_PER_MINUTE
                activity = float(volume_profile((minute + 0.5) / SESSION_MINUTES))
                dt = 60.0 * (0.5 + 0.5 * activity) / TRADING_SECONDS_PER_YEAR
                open_log = self._log_spot.copy()
                moved = step(params, self._log_spot, self._variance, dt, rng)
                # High and low: exact draws of a Brownian bridge's maximum and minimum.
                close_log = self._log_spot
                gap = (close_log - open_log) ** 2
                spread = -2.0 * moved.diffusion_std**2 * np.log(rng.random((2, n)))
                high = (open_log + close_log + np.sqrt(gap + spread[0])) / 2.0
                low = (open_log + close_log - np.sqrt(gap + spread[1])) / 2.0
                volume = np.round(
                    shares_per_minute * activity * rng.lognormal(-0.06, 0.35, n) / 100.0
                ) * 100.0
                bars.append(
                    BarBatch(
                        symbol_id=symbol_ids, ts_ns=np.full(n, bar_start, np.int64),
                        open=_cents(open_log), high=_cents(high), low=_cents(low),
                        close=_cents(close_log),
                        volume=volume,
                    )
                )
        self._last_ns = now_ns
        self._chains = None
        chains = self._roll_chains(now_ns)
        stock, options = self._snapshot(now_ns)
        return FeedBatch(stock, options, BarBatch.concat(bars), chains)

    # -- Feed protocol ------------------------------------------------------------------

    async def warmup(self) -> FeedBatch:
        """Return warm-up bars and chains as of the clock's now (see :meth:`history`)."""
        return self.history(self._clock())

    async def stream(self) -> AsyncIterator[FeedBatch]:
        """Yield one batch per ``interval_ms``, each covering the time since the last."""
        loop = asyncio.get_running_loop()
        period = self.interval_ns / NS_PER_SECOND
        deadline = loop.time()
        while not self._closed:
            deadline += period
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                deadline = loop.time()  # fell behind: carry on without bursting
                await asyncio.sleep(0)
            if self._closed:
                break
            yield self.next_batch(self._clock())

    def status(self) -> FeedStatus:
        """Return message counts and the simulator's configuration."""
        now = self._last_ns
        in_session = now is not None and session_fraction(now) is not None
        return FeedStatus(
            name=self.name,
            connected=not self._closed,
            last_message_ns=self._last_message_ns,
            messages=self._messages,
            dropped=self._dropped,
            detail={
                "symbols": len(self.symbols), "rate": self.rate, "option_rate": self.option_rate,
                "interval_ms": self.interval_ns / 1e6, "seed": self.seed,
                "always_open": self.always_open, "regular_session": in_session,
                "contracts": 0 if self._chains is None else len(self._chains),
            },
        )

    async def close(self) -> None:
        """Stop the stream after its current period."""
        self._closed = True
