"""Plain stand-ins for the market actors, for route tests without Ray."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from core.errors import NotFound
from core.models import BarsResponse
from core.settings import Settings, normalize_symbol
from market.cache import InMemoryCache
from serve.auth import TokenSigner
from serve.deps import Services
from serve.stream import MarketHub

SECRET = "t" * 40


class _Remote:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return self._fn(*args, **kwargs)

        return call()


class FakeShard:
    def __init__(self, gateway: FakeGateway) -> None:
        self.gateway = gateway
        self.market_changes = _Remote(self._changes)
        self.chain_json = _Remote(lambda symbol, flt: gateway.chain_body(symbol))

    def _changes(self, since: int, symbols: list[str], first: list[str],
                 limit: int | None, wait_s: float = 0.0
                 ) -> tuple[int, list[str], dict[str, Any]]:
        seq = self.gateway.sequence
        changed = list(symbols) if seq > since else []
        fetch = list(dict.fromkeys([*first, *changed]))[:limit]
        return seq, changed, {s: self.gateway.data(s) for s in fetch}


class FakeGateway:
    symbols = ("AAPL", "MSFT")

    def __init__(self) -> None:
        self.sequence = 1
        self.price = 100.0
        self.interest: list[list[str]] = []
        feed = SimpleNamespace(set_interest=_Remote(self.interest.append))
        self.actors = SimpleNamespace(shards=[FakeShard(self)], feed=feed)

    def owner(self, symbol: str) -> Any:
        symbol = normalize_symbol(symbol)
        if symbol not in self.symbols:
            raise NotFound(f"unknown symbol {symbol!r}")
        return self.actors.shards[0]

    def data(self, symbol: str) -> dict[str, Any]:
        return {"symbol": symbol, "price": self.price, "volume": 1000.0,
                "timestamp": "2026-11-24T15:00:00Z", "indicators": {"sma_20": 99.5}}

    async def snapshot_dict(self, symbol: str) -> dict[str, Any]:
        self.owner(symbol)
        return self.data(symbol.upper())

    async def bars(self, symbol: str, timeframe: str, limit: int) -> BarsResponse:
        self.owner(symbol)
        bars = [{"timestamp": f"2026-11-24T15:{i:02d}:00Z", "open": 1, "high": 2, "low": 0.5,
                 "close": 1.5, "volume": 10, "sma_20": None} for i in range(limit)]
        return BarsResponse.model_validate({"symbol": symbol, "timeframe": timeframe,
                                            "bars": bars})

    def chain_body(self, symbol: str) -> bytes:
        self.owner(symbol)
        return orjson.dumps({"symbol": symbol, "underlying_price": self.price,
                             "as_of": "2026-11-24T15:00:00Z",
                             "model": {"name": "black_scholes_merton", "rate": 0.04,
                                       "dividend_yield": 0.0}, "contracts": []})

    async def chain_json(self, symbol: str, flt: Any) -> bytes:
        return self.chain_body(symbol.upper())

    async def stats(self) -> list[dict[str, Any]]:
        return [{"ticks": 10}]

    async def feed_status(self) -> dict[str, Any]:
        return {"running": True, "seconds_since_batch": 0.1, "error": None}


def make_services() -> Services:
    gateway = FakeGateway()
    services = Services(settings=Settings(), signer=TokenSigner(SECRET), cache=InMemoryCache(),
                        market=gateway)
    services.hub = MarketHub(gateway, poll_interval_s=0.01, options_interval_s=0.05)
    return services
