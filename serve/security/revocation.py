"""Revoked tokens, by ``jti`` or by subject, shared through the cache (Redis when configured).

Each revocation is appended to one shared list and a version key changes; every replica
keeps a local copy and reloads it when the version moved (checked every ``refresh_s`` by
a background loop), so the per-request check is a dict lookup and a revocation reaches
every replica within ``refresh_s`` (the replica that stored it at once). A ``jti`` stays
revoked until its token would have expired; a subject's revocation covers every token
issued to it up to that moment (by ``iat``, whole seconds) and lasts ``max_ttl_s``. With
Redis away the cache keeps the list in this replica's memory (``market.cache.redis_cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Literal

import orjson

from market.cache.base import Cache
from serve.auth import DEFAULT_TTL_S, Principal

LIST_KEY = "security:revocations"
VERSION_KEY = "security:revocations:version"
MAX_ENTRIES = 100_000

Kind = Literal["jti", "subject"]


class RevocationList:
    """Revocations in ``cache``, mirrored locally for the request path."""

    def __init__(self, cache: Cache, *, refresh_s: float = 0.5,
                 max_ttl_s: float = DEFAULT_TTL_S) -> None:
        self.cache = cache
        self.refresh_s = refresh_s
        self.max_ttl_s = max_ttl_s
        self._jtis: dict[str, float] = {}  # jti -> until
        self._subjects: dict[str, tuple[float, float]] = {}  # subject -> (before, until)
        self._version: bytes | None = None
        self._refreshing: asyncio.Task[None] | None = None

    async def revoke(self, kind: Kind, value: str, *,
                     until: float | None = None) -> dict[str, object]:
        """Revoke a ``jti`` (until ``until``, its expiry) or every token of a subject so far."""
        if not value:
            raise ValueError("nothing to revoke")
        now = time.time()
        end = min(until or now + self.max_ttl_s, now + self.max_ttl_s)
        entry = {"kind": kind, "value": value, "at": now, "until": end}
        self._apply(entry)
        await self.cache.list_append(LIST_KEY, orjson.dumps(entry), max_len=MAX_ENTRIES,
                                     ttl_s=self.max_ttl_s)
        await self.cache.set(VERSION_KEY, uuid.uuid4().hex.encode(), ttl_s=self.max_ttl_s)
        return entry

    def is_revoked(self, principal: Principal, now: float | None = None) -> bool:
        """Whether ``principal``'s token is revoked (local copy; see :meth:`poll`)."""
        if not self._jtis and not self._subjects:
            return False
        now = time.time() if now is None else now
        until = self._jtis.get(principal.jti)
        if until is not None and until > now:
            return True
        subject = self._subjects.get(principal.subject)
        return subject is not None and subject[1] > now and principal.issued_at <= subject[0]

    def poll(self) -> None:
        """Keep the local copy fresh: start the reload loop if it is not running (per request).

        The loop reloads every ``refresh_s`` whether or not requests arrive, so a replica
        that was idle does not judge its next request by an old copy.
        """
        if self._refreshing is None or self._refreshing.done():
            with contextlib.suppress(RuntimeError):  # no running loop: the caller reloads
                self._refreshing = asyncio.get_running_loop().create_task(self._reload_loop())

    async def _reload_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the cache falls back by itself; retry
                await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def refresh(self) -> None:
        """Reload the local copy when the shared version changed."""
        version = await self.cache.get(VERSION_KEY)
        if version == self._version:
            return
        entries = await self.cache.list_range(LIST_KEY)
        self._jtis, self._subjects = {}, {}
        for raw in entries:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self._apply(orjson.loads(raw))
        self._version = version

    def _apply(self, entry: dict[str, object]) -> None:
        now = time.time()
        until = float(entry["until"])  # type: ignore[arg-type]
        if until <= now:
            return
        value = str(entry["value"])
        if entry["kind"] == "jti":
            self._jtis[value] = max(until, self._jtis.get(value, 0.0))
        elif entry["kind"] == "subject":
            at = float(entry["at"])  # type: ignore[arg-type]
            before, old_until = self._subjects.get(value, (0.0, 0.0))
            self._subjects[value] = (max(at, before), max(until, old_until))

    def __len__(self) -> int:
        return len(self._jtis) + len(self._subjects)
