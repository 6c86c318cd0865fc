"""Rate limits per subject and per address, and the RateLimit headers."""

from __future__ import annotations

import asyncio

import pytest

from core.settings import Settings
from market.cache import InMemoryCache
from market.cache.gcra import RateDecision
from serve.auth import Principal
from serve.security.ratelimit import RateLimiter, rate_headers


def _limiter(**settings: object) -> RateLimiter:
    values = {"secret_key": "r" * 40, "rate_budget_viewer": 5, "rate_budget_per_ip": 8,
              "rate_window_s": 60.0, **settings}
    return RateLimiter(InMemoryCache(), Settings(**values))


def _charge_until_refused(limiter: RateLimiter, client: str, principal: Principal | None,
                          cost: int = 1) -> int:
    async def run() -> int:
        allowed = 0
        while (await limiter.charge(client, principal, cost)).allowed:
            allowed += 1
        return allowed

    return asyncio.run(run())


def test_disabled_limiter_charges_nothing() -> None:
    limiter = _limiter(rate_limit_enabled=False)

    assert asyncio.run(limiter.charge("1.2.3.4", None, 1)) is None


def test_a_subject_gets_its_role_budget_and_an_anonymous_client_the_address_budget() -> None:
    limiter = _limiter()
    viewer = Principal(subject="ann", role="viewer")

    assert _charge_until_refused(limiter, "10.0.0.1", viewer) == 5
    assert _charge_until_refused(limiter, "10.0.0.2", None) == 8


def test_the_address_quota_binds_every_subject_behind_it() -> None:
    limiter = _limiter(rate_budget_viewer=100)

    first = _charge_until_refused(limiter, "10.0.0.3", Principal(subject="a", role="viewer"))
    second = _charge_until_refused(limiter, "10.0.0.3", Principal(subject="b", role="viewer"))

    assert (first, second) == (8, 0)


def test_cost_counts_against_the_budget() -> None:
    assert _charge_until_refused(_limiter(), "10.0.0.4", None, cost=3) == 2  # 3 + 3 of 8


def test_fallback_share_divides_the_budget_across_replicas() -> None:
    assert _limiter(ingress_replicas=4).fallback_share == pytest.approx(0.25)
    assert _limiter(ingress_replicas=1).fallback_share == 1.0


def test_headers_round_the_reset_up_and_state_the_policy() -> None:
    decision = RateDecision(allowed=True, limit=60, remaining=12, reset_s=4.2,
                            retry_after_s=0.0, window_s=60.0)

    headers = dict(rate_headers(decision))

    assert headers == {b"ratelimit-limit": b"60", b"ratelimit-remaining": b"12",
                       b"ratelimit-reset": b"5", b"ratelimit-policy": b"60;w=60"}
