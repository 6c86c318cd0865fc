"""The simulated feed: determinism, message shape and rate, chains, warm-up, surface."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime

import numpy as np
import pytest

from core.settings import DEFAULT_SYMBOLS, Settings
from market.feeds.base import (
    NS_PER_MINUTE,
    NS_PER_SECOND,
    QUOTE,
    TRADE,
    Feed,
    FeedBatch,
    TickBatch,
    parse_occ_symbol,
)
from market.feeds.sim import SimulatedFeed
from market.feeds.sim_calendar import (
    SESSION_MINUTES,
    session_bounds_ns,
    third_friday,
)
from market.feeds.sim_options import surface_vol
from market.greeks import implied_volatility, time_to_expiry

MONDAY = date(2025, 11, 24)
OPEN_NS, CLOSE_NS = session_bounds_ns(MONDAY)
MID_SESSION_NS = OPEN_NS + 150 * NS_PER_MINUTE  # 12:00 New York
NIGHT_NS = int(datetime(2025, 11, 25, 8, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
PERIOD_NS = 20_000_000


def _feed(**overrides: object) -> SimulatedFeed:
    options: dict[str, object] = {"seed": 11, "rate": 5_000.0, "option_rate": 2_000.0}
    options.update(overrides)
    return SimulatedFeed(DEFAULT_SYMBOLS, **options)  # type: ignore[arg-type]


def _run(feed: SimulatedFeed, start_ns: int, periods: int, period_ns: int = PERIOD_NS
         ) -> list[FeedBatch]:
    feed.history(start_ns)
    return [feed.next_batch(start_ns + i * period_ns) for i in range(1, periods + 1)]


def test_same_seed_and_clock_gives_identical_batches() -> None:
    # Arrange
    first, second, other = _feed(), _feed(), _feed(seed=12)

    # Act
    a, b, c = (_run(f, MID_SESSION_NS, 25) for f in (first, second, other))

    # Assert
    for x, y in zip(a, b, strict=True):
        for part in ("ticks", "option_ticks"):
            for field in fields(getattr(x, part)):
                np.testing.assert_array_equal(
                    getattr(getattr(x, part), field.name), getattr(getattr(y, part), field.name)
                )
    assert first.history(MID_SESSION_NS).bars.close.tolist() == (
        second.history(MID_SESSION_NS).bars.close.tolist()
    )
    assert not np.array_equal(a[-1].ticks.ts_ns[:5], c[-1].ticks.ts_ns[:5])


def test_ticks_are_time_ordered_within_their_period() -> None:
    batches = _run(_feed(), MID_SESSION_NS, 20)

    for i, batch in enumerate(batches, start=1):
        low, high = MID_SESSION_NS + (i - 1) * PERIOD_NS, MID_SESSION_NS + i * PERIOD_NS
        for ts in (batch.ticks.ts_ns, batch.option_ticks.ts_ns):
            assert len(ts) > 0
            assert np.all(np.diff(ts) >= 0)
            assert ts.min() > low
            assert ts.max() <= high


def test_message_rate_matches_configuration_when_always_open() -> None:
    feed = _feed(rate=20_000.0, option_rate=3_000.0)

    batches = _run(feed, NIGHT_NS, 500)  # 10 s outside the session, always_open

    stock = sum(len(b.ticks) for b in batches)
    options = sum(len(b.option_ticks) for b in batches)
    assert stock == pytest.approx(200_000, rel=0.03)
    assert options == pytest.approx(30_000, rel=0.05)
    assert feed.status().messages == stock + options


def test_closed_market_is_quiet_without_always_open() -> None:
    feed = _feed(rate=20_000.0, always_open=False)

    stock = sum(len(b.ticks) for b in _run(feed, NIGHT_NS, 250))

    assert 0 < stock < 0.1 * 20_000 * 5


@pytest.fixture(scope="module")
def session_ticks() -> list[FeedBatch]:
    """A whole regular session, one batch a minute."""
    feed = _feed(rate=40.0, option_rate=5.0, max_backlog_s=120.0)
    feed.history(OPEN_NS)
    return [feed.next_batch(OPEN_NS + m * NS_PER_MINUTE) for m in range(1, SESSION_MINUTES + 1)]


def test_session_message_count_matches_rate(session_ticks: list[FeedBatch]) -> None:
    stock = sum(len(b.ticks) for b in session_ticks)

    assert stock == pytest.approx(40.0 * SESSION_MINUTES * 60, rel=0.03)


def test_intraday_activity_is_u_shaped(session_ticks: list[FeedBatch]) -> None:
    per_minute = np.array([len(b.ticks) for b in session_ticks], np.float64)
    shares = np.array([np.nansum(b.ticks.size) for b in session_ticks])

    half_hours = per_minute.reshape(13, 30).sum(axis=1)
    share_half_hours = shares.reshape(13, 30).sum(axis=1)
    middle = half_hours[4:9].mean()
    assert half_hours[0] > 1.5 * middle
    assert half_hours[-1] > 1.5 * middle
    assert share_half_hours[0] > share_half_hours[6] < share_half_hours[-1]


def test_quotes_and_trades_are_well_formed() -> None:
    batches = _run(_feed(), MID_SESSION_NS, 50)
    ticks = type(batches[0].ticks).concat([b.ticks for b in batches])
    options = type(batches[0].option_ticks).concat([b.option_ticks for b in batches])

    for t in (ticks, options):
        quote, trade = t.kind == QUOTE, t.kind == TRADE
        assert quote.sum() > 0
        assert trade.sum() > 0
        assert np.all(t.bid[quote] < t.ask[quote])
        assert np.all(t.bid[quote] >= 0)
        assert np.all(t.bid_size[quote] > 0)
        assert np.all(t.ask_size[quote] > 0)
        assert np.all(t.price[trade] > 0)
        assert np.all(t.size[trade] > 0)
        assert np.all(np.isnan(t.price[quote]))
        assert np.all(np.isnan(t.bid[trade]))
    assert np.all(ticks.bid[ticks.kind == QUOTE] > 0)
    sizes = ticks.size[ticks.kind == TRADE]
    assert np.mean(sizes % 100 == 0) > 0.5  # mostly round lots
    assert sizes.max() >= 2_000  # heavy tail


def test_spreads_widen_for_cheap_and_volatile_stocks() -> None:
    feed = SimulatedFeed(["SPY", "TSLA", "PENY"], seed=3, rate=5_000.0, option_rate=0.0)
    feed.params.spot[2] = 4.0
    batches = _run(feed, MID_SESSION_NS, 50)
    ticks = type(batches[0].ticks).concat([b.ticks for b in batches])

    quote = ticks.kind == QUOTE
    relative = (ticks.ask - ticks.bid) / (ticks.ask + ticks.bid) * 2
    by_symbol = [np.median(relative[quote & (ticks.symbol_id == i)]) for i in range(3)]
    assert by_symbol[0] < by_symbol[1] < by_symbol[2]


def test_chain_contracts_parse_back_and_open_interest_is_concentrated() -> None:
    feed = _feed()
    chains = feed.history(MID_SESSION_NS).chains

    assert set(chains) == set(DEFAULT_SYMBOLS)
    for symbol, chain in chains.items():
        for i in range(0, len(chain), 7):
            underlying, expiration, is_call, strike = parse_occ_symbol(chain.contract[i])
            assert (underlying, expiration, is_call, strike) == (
                symbol, chain.expiration[i], bool(chain.is_call[i]), chain.strike[i]
            )
        assert np.all(chain.expiration > np.datetime64(MONDAY, "D"))
        spot = feed.spot[feed.symbols.index(symbol)]
        assert chain.strike.min() < 0.8 * spot
        assert chain.strike.max() > 1.2 * spot
        near = np.abs(chain.strike / spot - 1) < 0.05
        far = np.abs(chain.strike / spot - 1) > 0.2
        first_month = chain.expiration <= chain.expiration.min() + np.timedelta64(30, "D")
        open_interest = chain.open_interest
        in_month = open_interest[first_month & near].mean(), open_interest[first_month & far].mean()
        assert in_month[0] > 2 * in_month[1]
        monthly = np.array([d == third_friday(d.year, d.month) for d in chain.expiration.tolist()])
        assert open_interest[monthly & near].mean() > open_interest[~monthly & near].mean()


def test_chains_are_relisted_on_a_new_day() -> None:
    feed = _feed()
    feed.history(CLOSE_NS)
    midnight = int(datetime(2025, 11, 25, 5, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND

    same_day = feed.next_batch(midnight - NS_PER_SECOND)
    next_day = feed.next_batch(midnight + NS_PER_SECOND)

    assert same_day.chains == {}
    assert set(next_day.chains) == set(DEFAULT_SYMBOLS)
    assert feed.status().dropped > 0  # the stall from the close to midnight drew no messages


def test_warmup_bars_cover_sessions_and_are_consistent() -> None:
    feed = _feed()
    now = OPEN_NS + 60 * NS_PER_MINUTE + 17 * NS_PER_SECOND

    bars = feed.history(now).bars
    after = _run_from(feed, now, 25)

    per_symbol = np.bincount(bars.symbol_id, minlength=len(DEFAULT_SYMBOLS))
    assert np.all(per_symbol == 2 * SESSION_MINUTES + 60)
    assert np.all(np.diff(bars.ts_ns) >= 0)
    assert bars.ts_ns.max() + NS_PER_MINUTE <= now
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.volume > 0)
    last_close = bars.close[-len(DEFAULT_SYMBOLS):]
    trade = after.kind == TRADE
    for sid, close in enumerate(last_close):
        prices = after.price[trade & (after.symbol_id == sid)]
        assert np.all(np.abs(prices / close - 1) < 0.01)


def _run_from(feed: SimulatedFeed, start_ns: int, periods: int) -> TickBatch:
    batches = [feed.next_batch(start_ns + i * PERIOD_NS) for i in range(1, periods + 1)]
    return TickBatch.concat([b.ticks for b in batches])


def test_warmup_bars_returns_are_realistic() -> None:
    feed = _feed()
    bars = feed.history(CLOSE_NS).bars

    for sid, symbol in enumerate(feed.symbols):
        close = bars.close[bars.symbol_id == sid]
        returns = np.diff(np.log(close))
        annual = returns.std() * np.sqrt(252 * SESSION_MINUTES)
        assert 0.05 < annual < 1.5, symbol


def test_option_mid_prices_imply_the_surface_with_a_put_skew() -> None:
    # Arrange: one period with many option quotes, against the feed's own state.
    feed = _feed(option_rate=200_000.0, rate=10.0)
    chains = feed.history(MID_SESSION_NS).chains
    now = MID_SESSION_NS + 100 * PERIOD_NS
    options = feed.next_batch(now).option_ticks
    quote = options.kind == QUOTE
    o = options.take(quote)
    sid, index = o.symbol_id, o.contract_index
    flat = [chains[symbol] for symbol in feed.symbols]
    start = np.cumsum([0] + [len(c) for c in flat])[sid] + index
    strike = np.concatenate([c.strike for c in flat])[start]
    is_call = np.concatenate([c.is_call for c in flat])[start]
    expiration = np.concatenate([c.expiration for c in flat])[start]
    spot = feed.spot[sid]
    years = time_to_expiry(expiration, 0) - o.ts_ns / (365 * 86_400 * NS_PER_SECOND)
    r, q = feed.risk_free_rate, feed.dividend_yield

    # Act
    iv = implied_volatility((o.bid + o.ask) / 2, spot, strike, years, r, q, is_call)

    # Assert: near the money and a few weeks out, the recovered IV is the surface's.
    p = feed.params
    k = np.log(strike / (spot * np.exp((r - q) * years)))
    surface = surface_vol(k, years, p.theta[sid], p.kappa[sid], feed.variance[sid], p.skew[sid],
                          p.smile[sid])
    # Out of the money (in the money the 0.05 tick swamps a small time value).
    out_of_the_money = np.where(is_call, k > -0.01, k < 0.01)
    liquid = (np.abs(k) < 0.08) & (years > 14 / 365) & out_of_the_money
    assert liquid.sum() > 200
    assert np.nanmax(np.abs(iv[liquid] - surface[liquid])) < 0.01
    # Skew: out-of-the-money puts (below spot) trade at higher IV than calls above it.
    for s in range(len(feed.symbols)):
        mine = (sid == s) & (years > 20 / 365) & (years < 0.3) & np.isfinite(iv)
        puts = iv[mine & ~is_call & (k < -0.08) & (k > -0.2)]
        calls = iv[mine & is_call & (k > 0.08) & (k < 0.2)]
        assert len(puts)
        assert len(calls)
        assert np.median(puts) > np.median(calls) + 0.01, feed.symbols[s]


def test_option_trades_concentrate_near_the_money_and_short_expiries() -> None:
    feed = _feed(option_rate=100_000.0, rate=10.0)
    chains = feed.history(MID_SESSION_NS).chains
    o = feed.next_batch(MID_SESSION_NS + NS_PER_SECOND).option_ticks
    chain = chains["AAPL"]
    spot = feed.spot[feed.symbols.index("AAPL")]
    mine = o.contract_index[o.symbol_id == feed.symbols.index("AAPL")]

    counts = np.bincount(mine, minlength=len(chain))
    near = np.abs(chain.strike / spot - 1) < 0.05
    short = chain.expiration <= chain.expiration.min() + np.timedelta64(14, "D")
    far = np.abs(chain.strike / spot - 1) > 0.15
    assert counts[near].mean() > 5 * counts[far].mean()
    assert counts[short & near].mean() > 2 * counts[~short & near].mean()


async def test_stream_paces_batches_and_stops_on_close() -> None:
    ticks = iter(range(MID_SESSION_NS, MID_SESSION_NS + 10**12, 5_000_000))
    feed = _feed(interval_ms=5.0, clock=lambda: next(ticks))
    warm = await feed.warmup()
    assert len(warm.bars) > 0
    seen: list[FeedBatch] = []

    async for batch in feed.stream():
        seen.append(batch)
        if len(seen) == 5:
            await feed.close()

    assert len(seen) == 5
    assert all(len(b.ticks) > 0 for b in seen)
    assert np.all(np.diff(np.concatenate([b.ticks.ts_ns for b in seen])) >= 0)
    status = feed.status()
    assert status.name == "sim"
    assert not status.connected
    assert status.messages == sum(len(b.ticks) + len(b.option_ticks) for b in seen)


def test_from_settings_builds_the_configured_feed() -> None:
    settings = Settings(symbols="AAPL,SPY", sim_seed=3, sim_rate=123.0, sim_option_rate=7.0)

    feed = SimulatedFeed.from_settings(settings)

    assert isinstance(feed, SimulatedFeed)
    checked: Feed = feed
    assert checked.symbols == ("AAPL", "SPY")
    assert (feed.seed, feed.rate, feed.option_rate) == (3, 123.0, 7.0)


def test_warmup_and_new_listings_quote_every_symbol_and_contract() -> None:
    feed = _feed()
    midnight = int(datetime(2025, 11, 25, 5, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND

    warm = feed.history(midnight - NS_PER_SECOND)
    relisted = feed.next_batch(midnight + NS_PER_SECOND)

    assert np.array_equal(np.sort(warm.ticks.symbol_id), np.arange(len(DEFAULT_SYMBOLS)))
    assert np.all(warm.ticks.kind == QUOTE)
    for batch in (warm, relisted):
        quotes = batch.option_ticks.take(batch.option_ticks.kind == QUOTE)
        for sid, symbol in enumerate(feed.symbols):
            listed = np.unique(quotes.contract_index[quotes.symbol_id == sid])
            assert len(listed) == len(batch.chains[symbol])
        assert np.all(quotes.ask > quotes.bid)
        assert np.all(np.diff(batch.option_ticks.ts_ns) >= 0)


def test_warmup_on_a_sunday_holds_the_last_three_full_sessions() -> None:
    feed = _feed()
    sunday_noon = int(datetime(2025, 11, 30, 17, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND

    bars = feed.history(sunday_noon).bars

    assert np.all(np.bincount(bars.symbol_id) == 3 * SESSION_MINUTES)
    _, friday_close = session_bounds_ns(date(2025, 11, 28))
    assert bars.ts_ns.max() == friday_close - NS_PER_MINUTE
    assert bars.ts_ns.min() == session_bounds_ns(date(2025, 11, 26))[0]


def test_returns_load_on_the_market_factor_unless_disabled() -> None:
    def correlation(feed: SimulatedFeed) -> float:
        bars = feed.history(CLOSE_NS).bars
        spy, qqq = (np.diff(np.log(bars.close[bars.symbol_id == feed.symbols.index(s)]))
                    for s in ("SPY", "QQQ"))
        return float(np.corrcoef(spy, qqq)[0, 1])

    assert correlation(_feed()) > 0.7
    assert abs(correlation(_feed(market_factor=False))) < 0.15
