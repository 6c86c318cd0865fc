"""Rate limits per token subject and per client address, with a cost per route.

Each request is charged its route's cost against two quotas at once (GCRA,
``market.cache.gcra``): its subject's, sized by role (``rate_budget_<role>`` per
``rate_window_s``), and its address's (``rate_budget_per_ip``). With Redis configured
every ingress replica shares them; while Redis is away each replica limits from its own
memory at the budget divided by the replica count (and ``/health`` shows the cache
degraded), and shares again once Redis answers.
"""

from __future__ import annotations

from core.settings import Settings
from market.cache.base import Cache
from market.cache.gcra import Quota, RateDecision
from serve.auth import Principal


class RateLimiter:
    """Charge requests to their subject's and address's quotas."""

    def __init__(self, cache: Cache, settings: Settings) -> None:
        self.cache = cache
        self.enabled = settings.rate_limit_enabled
        window = settings.rate_window_s
        self.by_role = {"viewer": Quota(settings.rate_budget_viewer, window),
                        "analyst": Quota(settings.rate_budget_analyst, window),
                        "admin": Quota(settings.rate_budget_admin, window)}
        self.per_address = Quota(settings.rate_budget_per_ip, window)
        self.fallback_share = 1.0 / max(1, settings.ingress_replicas)

    async def charge(self, client: str, principal: Principal | None,
                     cost: int) -> RateDecision | None:
        """Charge ``cost``; None when rate limiting is off."""
        if not self.enabled:
            return None
        keys = [f"rl:ip:{client}"]
        quotas = [self.per_address]
        if principal is not None:
            keys.append(f"rl:sub:{principal.subject}")
            quotas.append(self.by_role[principal.role])
        return await self.cache.rate_take(keys, cost=max(cost, 0), quotas=quotas,
                                          fallback_share=self.fallback_share)


def rate_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Limit/-Remaining/-Reset`` and ``RateLimit-Policy`` for a response."""
    reset = max(0, int(-(-decision.reset_s // 1)))
    return [(b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(reset).encode()),
            (b"ratelimit-policy",
             f"{decision.limit};w={int(decision.window_s)}".encode())]
