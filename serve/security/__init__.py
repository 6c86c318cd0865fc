"""Security on every path: the one request pipeline and its parts.

``pipeline`` (the ASGI layer in front of the FastAPI app) runs, for every HTTP request
and WebSocket connection, in this order: request id → client address (``ipfilter``) →
IP filter → authentication (``serve.auth`` with ``keyring``, ``revocation``) → the route's
role (``policy``) → rate limit (``ratelimit``) → handler; ``websocket`` adds the per
connection limits and signed frames (``signing``, also the client helper).
"""
