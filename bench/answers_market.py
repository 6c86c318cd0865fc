"""An in-process market for the answer benchmark: the simulator feeding one Shard.

The gateway's async surface (``symbols``, ``snapshot``, ``bars``, ``chain_summary``)
over :class:`market.shard.Shard` fed by :class:`market.feeds.sim.SimulatedFeed` at a
fixed clock, so every run sees the same market. No Ray.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.models import BarsResponse, MarketData
from market.chain_analytics import chain_summary
from market.feeds.sim import SimulatedFeed
from market.shard import Shard

SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ", "AMZN", "META")
# A Tuesday mid-session: "by Friday" is 3 days out, "next week" the Friday after.
AS_OF = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


class SimMarket:
    """The simulator's market after ``seconds`` of live trading past ``AS_OF``."""

    def __init__(self, symbols: tuple[str, ...] = SYMBOLS, *, seconds: int = 120,
                 seed: int = 7) -> None:
        start = int(AS_OF.timestamp() * 1e9)
        clock = [start]
        self.symbols = symbols
        feed = SimulatedFeed(symbols, seed=seed, clock=lambda: clock[0])
        history = feed.history(start)
        self.shard = Shard(symbols, symbols)
        self.shard.ingest(bars=history.bars, chains=history.chains, warmup=True)
        for step in range(1, seconds + 1):
            clock[0] = start + step * 1_000_000_000
            batch = feed.next_batch(clock[0])
            self.shard.ingest(batch.ticks, batch.option_ticks, batch.bars, batch.chains)

    async def snapshot(self, symbol: str) -> MarketData:
        """The symbol's latest MarketData."""
        return MarketData.model_validate(self.shard.snapshot(symbol.upper()))

    async def bars(self, symbol: str, timeframe: str = "1Min", limit: int = 390) -> BarsResponse:
        """The last ``limit`` 1-minute bars."""
        rows = self.shard.bars(symbol.upper(), limit)
        return BarsResponse.model_validate({"symbol": symbol.upper(), "timeframe": timeframe,
                                            "bars": rows})

    async def chain_summary(self, symbol: str) -> dict[str, Any]:
        """The chain analytics of :func:`market.chain_analytics.chain_summary`."""
        return chain_summary(**self.shard.chain_arrays(symbol.upper()))  # type: ignore[no-any-return]
