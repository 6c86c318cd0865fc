"""Chat sessions: bounded history, ownership, validation."""

from __future__ import annotations

import pytest

from core.errors import Forbidden, InvalidInput
from core.models import ChatMessage
from market.cache import InMemoryCache
from rag.sessions import SessionStore


async def test_new_session_keeps_history_in_order() -> None:
    store = SessionStore(InMemoryCache())
    session_id = await store.open(None, "alice")

    await store.append(session_id, "alice", ChatMessage(role="user", content="one"),
                       ChatMessage(role="assistant", content="two"))

    history = await store.history(session_id, "alice")
    assert [m.content for m in history] == ["one", "two"]


async def test_history_is_bounded_to_newest_messages() -> None:
    store = SessionStore(InMemoryCache(), max_messages=3)
    session_id = await store.open(None, "alice")
    for i in range(5):
        await store.append(session_id, "alice", ChatMessage(role="user", content=str(i)))

    assert [m.content for m in await store.history(session_id, "alice")] == ["2", "3", "4"]


async def test_another_subject_cannot_open_read_or_write_the_session() -> None:
    store = SessionStore(InMemoryCache())
    session_id = await store.open(None, "alice")
    await store.append(session_id, "alice", ChatMessage(role="user", content="secret"))

    with pytest.raises(Forbidden):
        await store.open(session_id, "mallory")
    with pytest.raises(Forbidden):
        await store.history(session_id, "mallory")
    with pytest.raises(Forbidden):
        await store.append(session_id, "mallory", ChatMessage(role="user", content="x"))


async def test_client_chosen_unknown_id_is_created_for_caller() -> None:
    store = SessionStore(InMemoryCache())

    assert await store.open("my-session-01", "bob") == "my-session-01"
    assert await store.history("my-session-01", "bob") == []


async def test_malformed_session_id_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        await SessionStore(InMemoryCache()).open("../../etc", "bob")
