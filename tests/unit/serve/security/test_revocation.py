"""Revocation by token id and by subject, shared between replicas through the cache."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from market.cache import InMemoryCache
from serve.auth import TokenSigner
from serve.security.revocation import RevocationList

SECRET = "p" * 40


def test_revoked_jti_and_subject_are_seen_by_another_replica():
    async def scenario():
        cache = InMemoryCache()  # stands for the shared Redis
        signer = TokenSigner(SECRET)
        here, there = RevocationList(cache), RevocationList(cache)
        one = signer.verify(signer.issue("viewer", "alice"))
        two = signer.verify(signer.issue("viewer", "bob"))
        await here.revoke("jti", one.jti)
        await here.revoke("subject", "bob")
        before = there.is_revoked(one)
        await there.refresh()
        return before, there.is_revoked(one), there.is_revoked(two), len(there)

    before, jti_revoked, subject_revoked, entries = asyncio.run(scenario())
    assert not before
    assert jti_revoked
    assert subject_revoked
    assert entries == 2


def test_subject_revocation_spares_tokens_issued_later():
    async def scenario():
        revocations = RevocationList(InMemoryCache())
        signer = TokenSigner(SECRET)
        old = signer.verify(signer.issue("viewer", "carol"))
        await revocations.revoke("subject", "carol")
        newer = dataclasses.replace(old, issued_at=time.time() + 2)
        return revocations.is_revoked(old), revocations.is_revoked(newer)

    assert asyncio.run(scenario()) == (True, False)
