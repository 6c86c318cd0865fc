"""A short path for the two hottest reads: ``GET /market/{symbol}`` and ``GET /options/{symbol}``.

Under load most requests are plain reads of a quote or a whole chain by a client
whose token the replica has seen before. FastAPI's routing, dependency solving
and exception middleware cost several times the read itself (measured in
``bench/bench_rest.py``), so this ASGI app, in front of the FastAPI app, answers such a
request directly: same body, same headers, same role check as the routes in
``serve/routes_market.py``. It is the app Serve serves, with the FastAPI app behind
it, rather than one of the FastAPI app's middlewares: Starlette's entry and
middleware stack, run before a middleware is reached, cost about 15 µs a request
(``bench/bench_rest.py``, four runs each on a 2-core host: a median 0.50 of a bare
uvicorn process's requests/s before, 0.55 after).

Anything else goes to the full app untouched: other paths and methods, any query
string (filters, ``?token=``), a missing, bad or expired token, a symbol outside
the path pattern, and any failure of the read itself (unknown symbol, a shard
down), so every error is still produced, and worded, by the one error handler.
"""

from __future__ import annotations

import re

import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from market.shard import ChainFilter
from serve.deps import services_for

HOT_PATH = re.compile(r"^/(market|options)/([A-Za-z][A-Za-z0-9.\-]{0,9})$")
_JSON_HEADERS = b"application/json"
_NO_FILTER = ChainFilter()


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


class HotReads:
    """ASGI app: authenticated plain quote and chain reads here, everything else to ``app``.

    It finds the replica's services the way the routes do (``app.state.services``,
    else the installed ones); before they exist everything goes to the full app.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and not scope.get("query_string")):
            match = HOT_PATH.match(scope["path"])
            if match is not None:
                body = await self._read(match.group(1), match.group(2), scope)
                if body is not None:
                    self.served += 1
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", _JSON_HEADERS)]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _read(self, kind: str, symbol: str, scope: Scope) -> bytes | None:
        services = services_for(self.app)
        token = _bearer(scope)
        if services is None or token is None:
            return None
        try:
            if not services.signer.verify(token).allows("viewer"):
                return None
            if kind == "options":
                body: bytes = await services.market.chain_json(symbol, _NO_FILTER)
                return body
            return orjson.dumps(await services.market.snapshot_dict(symbol))
        except Exception:  # noqa: BLE001 - any failure: the routes redo the read and word it
            return None
