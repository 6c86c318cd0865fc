"""Market REST routes, the market WebSocket stream and the health check."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import MarketrayError
from core.models import BarsResponse, MarketData, OptionsChain
from core.settings import normalize_symbol
from market.shard import ChainFilter
from serve.auth import accept_authenticated
from serve.deps import Services, ServicesDep, services_of
from serve.observability.health import deep_checks
from serve.security.policy import errors, secured
from serve.stream import CHANNELS, Subscriber

router = APIRouter()
SymbolPath = Annotated[str, Path(min_length=1, max_length=10, pattern=r"^[A-Za-z][A-Za-z0-9.\-]*$",
                                 description="ticker, e.g. AAPL")]
Timeframe = Literal["1Min", "5Min", "15Min", "30Min", "1Hour", "1Day"]
MAX_SYMBOLS_PER_CONNECTION = 500
READ_ERRORS = errors(401, 403, 404, 422, 429, 503)


@router.get("/market/{symbol}", response_model=MarketData, tags=["market"],
            responses=READ_ERRORS)
@secured("viewer", cost=1)
async def market_data(symbol: SymbolPath, services: ServicesDep) -> Response:
    """Latest price, session volume and live indicators of one symbol."""
    data = await services.market.snapshot_dict(symbol)
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/market/{symbol}/bars", response_model=BarsResponse, tags=["market"],
            responses=READ_ERRORS)
@secured("viewer", cost=2)
async def market_bars(
    symbol: SymbolPath, services: ServicesDep, timeframe: Timeframe = "1Min",
    limit: Annotated[int, Query(ge=1, le=5_000)] = 100,
) -> BarsResponse:
    """OHLCV bars, oldest first, each with indicator values as of its close."""
    result: BarsResponse = await services.market.bars(symbol, timeframe, limit)
    return result


@router.get("/options/{symbol}", response_model=OptionsChain, tags=["options"],
            responses=READ_ERRORS)
@secured("viewer", cost=5)
async def options_chain(
    symbol: SymbolPath, services: ServicesDep, expiration: date | None = None,
    type: Literal["call", "put"] | None = None,  # noqa: A002 - the contract's parameter name
    min_strike: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    max_strike: Annotated[float | None, Query(ge=0, le=1e9)] = None,
) -> Response:
    """The option chain with implied volatility and Greeks, filtered as asked."""
    flt = ChainFilter(expiration, type, min_strike, max_strike)
    body = await services.market.chain_json(symbol, flt)
    return Response(body, media_type="application/json")


class HealthBody(BaseModel):
    """Body of GET /health."""

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, Any]
    time: float


@router.get("/health", tags=["health"], response_model=HealthBody, responses={
    **errors(429), 503: {"model": HealthBody, "description": "unhealthy"}})
@secured(None, cost=1)
async def health(services: ServicesDep) -> JSONResponse:
    """Ray, shards, feed freshness, cache and models: healthy, degraded or unhealthy."""
    checks: dict[str, Any] = {}
    shard_stats = await services.market.stats()
    alive = sum(s is not None for s in shard_stats)
    checks["shards"] = {"status": "ok" if alive == len(shard_stats) else "down",
                        "alive": alive, "total": len(shard_stats),
                        "ticks": sum(s["ticks"] for s in shard_stats if s)}
    feed = await services.market.feed_status()
    if feed is None or not feed.get("running"):
        feed_state = "down"
    elif feed.get("error"):
        feed_state = "error"
    elif (feed.get("seconds_since_batch") or 0.0) > 10.0:
        feed_state = "stale"
    else:
        feed_state = "ok"
    checks["feed"] = {"status": feed_state, **(feed or {})}
    cache = await services.cache.status()
    checks["cache"] = {"status": "degraded" if cache.degraded else "ok",
                       "backend": cache.backend, "detail": cache.detail}
    for name in ("knowledge", "generator"):
        handle = getattr(services, name)
        if handle is None:
            continue
        try:
            status = await asyncio.wait_for(handle.status.remote(), 5.0)
            checks[name] = {"status": "degraded" if status.get("degraded") else "ok", **status}
        except Exception as exc:  # shown as degraded, never as a 500
            checks[name] = {"status": "down", "error": type(exc).__name__}
    hub = getattr(services, "hub", None)
    if hub is not None:
        checks["stream"] = {"status": "ok", **hub.stats()}
    checks.update(deep_checks(shard_stats, feed, checks.get("generator"),
                              checks.get("knowledge")))
    if checks["shards"]["alive"] == 0 or feed_state == "down" or any(
            c.get("status") == "unhealthy" for c in checks.values()):
        overall = "unhealthy"
    elif all(c.get("status") == "ok" for c in checks.values()):
        overall = "healthy"
    else:
        overall = "degraded"
    return JSONResponse({"status": overall, "checks": checks, "time": time.time()},
                        status_code=503 if overall == "unhealthy" else 200)


class StreamRequest(BaseModel):
    """A client message on the market stream."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["subscribe", "unsubscribe", "ping", "auth"]
    symbols: list[Annotated[str, Field(max_length=16)]] = []
    channels: list[Literal["market", "options"]] = Field(["market"], max_length=2)
    token: str | None = Field(None, max_length=4096)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_SYMBOLS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_SYMBOLS_PER_CONNECTION} symbols per message")
        return value


@secured("viewer")
async def market_stream(websocket: WebSocket) -> None:
    """Market stream (CONTRACT §6): subscribe/unsubscribe/ping; market and options frames.

    The request pipeline has authenticated the connection and checked the role.
    """
    services = services_of(websocket)
    await accept_authenticated(websocket)
    hub = services.hub
    hub.ensure_running()
    subscriber = Subscriber(websocket)
    hub.add(subscriber)
    writer = asyncio.create_task(subscriber.writer())
    try:
        while True:
            raw = await websocket.receive_text()
            await handle_stream_message(raw, subscriber, services)
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(subscriber)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


async def handle_stream_message(raw: str, subscriber: Subscriber, services: Services) -> None:
    """Apply one client message; malformed ones get an error frame, never a disconnect."""
    try:
        request = StreamRequest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        await subscriber.send_now({"type": "error", "code": "invalid_json",
                                   "message": "message is not valid JSON"})
        return
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors()[:3])
        await subscriber.send_now({"type": "error", "code": "invalid_message", "message": detail})
        return
    if request.action == "ping":
        await subscriber.send_now({"type": "pong", "time": time.time()})
        return
    if request.action == "auth":
        await subscriber.send_now({"type": "error", "code": "already_authenticated",
                                   "message": "connection is already authenticated"})
        return
    known, unknown = [], []
    for raw_symbol in request.symbols:
        try:
            symbol = normalize_symbol(raw_symbol)
            services.market.owner(symbol)
            known.append(symbol)
        except (ValueError, MarketrayError):
            unknown.append(raw_symbol)
    if unknown:
        await subscriber.send_now({"type": "error", "code": "unknown_symbol",
                                   "message": f"not tracked: {', '.join(unknown[:20])}"})
    hub = services.hub
    channels = [c for c in request.channels if c in CHANNELS]
    if request.action == "subscribe" and len(
            set(subscriber.subscriptions) | set(known)) > MAX_SYMBOLS_PER_CONNECTION:
        await subscriber.send_now({"type": "error", "code": "too_many_symbols",
                                   "message": f"at most {MAX_SYMBOLS_PER_CONNECTION} symbols "
                                   "per connection"})
        return
    if request.action == "subscribe":
        hub.subscribe(subscriber, known, channels)
        await subscriber.send_now({"type": "subscribed", "symbols": known, "channels": channels,
                                   "all": sorted(subscriber.subscriptions)})
        if "market" in channels:
            await _send_initial(subscriber, services, known)
        await services.notify_interest()
    else:
        hub.unsubscribe(subscriber, known, channels)
        await subscriber.send_now({"type": "unsubscribed", "symbols": known,
                                   "channels": channels, "all": sorted(subscriber.subscriptions)})


async def _send_initial(subscriber: Subscriber, services: Services, symbols: list[str]) -> None:
    """Queue the current snapshot of newly subscribed symbols so clients start with data."""
    hub = services.hub
    for symbol in symbols:
        data = hub.latest.get(symbol)
        if data is None:  # nobody streamed it yet: ask its shard
            try:
                data = await services.market.snapshot_dict(symbol)
            except MarketrayError:
                continue
        subscriber.offer((symbol, "market"), hub.market_frame(symbol, data))


router.add_api_websocket_route("/ws/market", market_stream)
