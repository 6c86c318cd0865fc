"""Bounded chat history per session, stored on the shared cache (Redis when configured).

A session belongs to the subject that opened it: its owner is stored beside the history
and every read or write checks it, so knowing another user's session id gives nothing
(:class:`core.errors.Forbidden`). Histories keep the newest ``max_messages`` messages
and expire ``ttl_s`` after the last write.
"""

from __future__ import annotations

import re
import secrets

from core.errors import Forbidden, InvalidInput
from core.models import ChatMessage
from market.cache.base import Cache

SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{8,64}$")
DEFAULT_MAX_MESSAGES = 20
DEFAULT_TTL_S = 24 * 3600.0


class SessionStore:
    """Chat sessions on a :class:`market.cache.base.Cache`."""

    def __init__(
        self, cache: Cache, *, max_messages: int = DEFAULT_MAX_MESSAGES,
        ttl_s: float = DEFAULT_TTL_S, prefix: str = "chat:",
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._cache = cache
        self._max_messages = max_messages
        self._ttl_s = ttl_s
        self._prefix = prefix

    def _owner_key(self, session_id: str) -> str:
        return f"{self._prefix}{session_id}:owner"

    def _history_key(self, session_id: str) -> str:
        return f"{self._prefix}{session_id}:history"

    async def open(self, session_id: str | None, subject: str) -> str:
        """Return a session id ``subject`` may use: a new one, or ``session_id`` if theirs.

        An unknown (or expired) ``session_id`` is created for ``subject``; one owned by
        someone else raises :class:`Forbidden`; a malformed one :class:`InvalidInput`.
        """
        if session_id is None:
            session_id = secrets.token_urlsafe(18)
        elif not SESSION_ID.fullmatch(session_id):
            raise InvalidInput("session_id must be 8-64 letters, digits, '-' or '_'")
        owner = await self._cache.get(self._owner_key(session_id))
        if owner is None:
            await self._cache.set(self._owner_key(session_id), subject.encode(), self._ttl_s)
        elif owner.decode() != subject:
            raise Forbidden("this session belongs to another user", code="session_forbidden")
        return session_id

    async def _check_owner(self, session_id: str, subject: str) -> None:
        owner = await self._cache.get(self._owner_key(session_id))
        if owner is not None and owner.decode() != subject:
            raise Forbidden("this session belongs to another user", code="session_forbidden")

    async def history(self, session_id: str, subject: str) -> list[ChatMessage]:
        """Return the session's messages, oldest first."""
        await self._check_owner(session_id, subject)
        raw = await self._cache.list_range(self._history_key(session_id))
        return [ChatMessage.model_validate_json(item) for item in raw]

    async def append(self, session_id: str, subject: str, *messages: ChatMessage) -> None:
        """Append messages, keeping the newest ``max_messages``; refreshes the expiry."""
        await self._check_owner(session_id, subject)
        for message in messages:
            await self._cache.list_append(
                self._history_key(session_id), message.model_dump_json().encode(),
                max_len=self._max_messages, ttl_s=self._ttl_s,
            )
        await self._cache.set(self._owner_key(session_id), subject.encode(), self._ttl_s)

    async def clear(self, session_id: str, subject: str) -> None:
        """Delete the session's history and ownership."""
        await self._check_owner(session_id, subject)
        await self._cache.delete(self._history_key(session_id))
        await self._cache.delete(self._owner_key(session_id))
