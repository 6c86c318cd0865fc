"""GCRA (generic cell rate algorithm) over several quotas at once, in Python and in Lua.

A quota allows ``limit`` cost units per ``window_s``, in a burst or spread out. Each key
keeps one number, its theoretical arrival time (TAT): a request of cost ``c`` moves it to
``max(TAT, now) + c * window_s / limit`` and is allowed when that lies at most
``window_s`` ahead of now. A request is allowed only when every quota allows it, and
then it is charged to all of them, so a subject's and an address's budgets are taken
together or not at all. :func:`take` is the in-process step; :data:`LUA` is the same
step as one Redis script (atomic, timed by the Redis server's clock so replicas agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quota:
    """``limit`` cost units per ``window_s`` seconds."""

    limit: int
    window_s: float

    def scaled(self, share: float) -> Quota:
        """This quota with its limit multiplied by ``share`` (at least 1)."""
        return Quota(max(1, int(self.limit * share)), self.window_s)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against the tightest of its quotas.

    ``remaining``: cost units still available at once; ``reset_s``: seconds until the
    quota is whole again; ``retry_after_s``: seconds until this request would pass (0
    when allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float
    window_s: float = 60.0


def take(tats: Sequence[float | None], now: float, cost: int,
         quotas: Sequence[Quota]) -> tuple[RateDecision, list[float] | None]:
    """Apply one request of ``cost`` to keys with theoretical arrival times ``tats``.

    Returns the decision and the keys' new TATs (None when refused: nothing changes).
    """
    if len(tats) != len(quotas) or not quotas:
        raise ValueError("one TAT per quota, at least one quota")
    new_tats: list[float] = []
    allowed = True
    binding: tuple[int, float, float, Quota] | None = None  # remaining, ahead, retry, quota
    for tat, quota in zip(tats, quotas, strict=True):
        interval = quota.window_s / quota.limit
        start = now if tat is None or tat < now else tat
        candidate = start + cost * interval
        ok = candidate - now <= quota.window_s + 1e-9
        ahead = (candidate if ok else start) - now
        remaining = max(0, math.floor((quota.window_s - ahead) / interval + 1e-9))
        retry = 0.0 if ok else candidate - now - quota.window_s
        new_tats.append(candidate)
        if not ok and allowed:  # the first refusal binds from now on
            allowed, binding = False, (remaining, ahead, retry, quota)
        elif binding is None or (allowed and remaining < binding[0]) or (
                not ok and retry > binding[2]):
            binding = (remaining, ahead, retry, quota)
    assert binding is not None
    remaining, ahead, retry, quota = binding
    decision = RateDecision(allowed, quota.limit, remaining, ahead, retry, quota.window_s)
    return decision, (new_tats if allowed else None)


# KEYS: one per quota. ARGV: cost, then limit and window (seconds) of each quota.
# Returns {allowed, limit, remaining, reset_ms, retry_ms, window_ms} of the binding quota.
LUA = """
local cost = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local n = #KEYS
local all_ok = true
local cand, rem, ahead, retry, lim, win = {}, {}, {}, {}, {}, {}
for i = 1, n do
  lim[i] = tonumber(ARGV[2 * i])
  win[i] = tonumber(ARGV[2 * i + 1])
  local interval = win[i] / lim[i]
  local tat = tonumber(redis.call('GET', KEYS[i]))
  local start = now
  if tat ~= nil and tat > now then start = tat end
  cand[i] = start + cost * interval
  local ok = cand[i] - now <= win[i] + 1e-9
  if ok then ahead[i] = cand[i] - now else ahead[i] = start - now end
  rem[i] = math.max(0, math.floor((win[i] - ahead[i]) / interval + 1e-9))
  if ok then retry[i] = 0 else retry[i] = cand[i] - now - win[i]; all_ok = false end
end
local b = 1
for i = 2, n do
  if all_ok then
    if rem[i] < rem[b] then b = i end
  elseif retry[i] > retry[b] then
    b = i
  end
end
if all_ok then
  for i = 1, n do
    redis.call('SET', KEYS[i], tostring(cand[i]), 'PX', math.ceil((cand[i] - now) * 1000) + 1000)
  end
end
return {all_ok and 1 or 0, lim[b], rem[b], math.ceil(ahead[b] * 1000),
        math.ceil(retry[b] * 1000), math.ceil(win[b] * 1000)}
"""


def from_lua(reply: Sequence[int | bytes | str]) -> RateDecision:
    """Turn :data:`LUA`'s reply into a :class:`RateDecision`."""
    allowed, limit, remaining, reset_ms, retry_ms, window_ms = (int(v) for v in reply)
    return RateDecision(bool(allowed), limit, remaining, reset_ms / 1e3, retry_ms / 1e3,
                        window_ms / 1e3)
