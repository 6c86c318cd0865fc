"""The three hand-written caches that clear themselves when full vs cachetools, same run.

marketray keeps three bounded caches as a plain ``dict`` that is emptied when it reaches
its bound: the verified-token cache (``serve.auth.TokenSigner``), the shard's chain-JSON
cache (``market.shard.Shard.chain_json``) and the ingress replica's chain TTL cache
(``serve.market_gateway.TtlCache``). The maintained alternative is ``cachetools``
(``LRUCache`` / ``TTLCache``), which evicts one entry at a time.

For each cache's bound and access pattern this prints:

* ``hit_ns``: the cost of a lookup that hits (the request path's cost when warm), for
  the dict and for cachetools;
* ``miss_rate``: the share of lookups that miss when the working set is 1.5x the bound
  (Zipf-distributed keys, s = 1.1), the case eviction policy decides; and at 0.5x, where
  neither evicts. The TTL caches run on one simulated clock (``LOOKUPS_PER_S``), so a
  slower cache does not see more expiries.

A miss costs what the cache saves: an HMAC and a JSON parse (token), a chain's JSON
encoding (shard), a Ray call (gateway). Prints one JSON object; the decision is in
docs/performance.md.

    python bench/bench_caches.py [--lookups 300000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cachetools import LRUCache, TTLCache

CACHES = {
    # name: (bound, what a miss costs)
    "verified_tokens": (10_000, "HMAC + JSON parse of the token"),
    "shard_chain_json": (4 * 1_000 + 64, "encoding the chain's JSON"),
    "gateway_chain_ttl": (4_096, "a Ray call to the shard"),
}
TTL_S = 0.25
LOOKUPS_PER_S = 20_000  # the simulated request rate the TTL cache sees


class Clock:
    """A simulated clock advanced per lookup, so both TTL caches see the same time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ClearingDict:
    """The hand-written policy: a dict emptied when it reaches ``bound``."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.data: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    def put(self, key: Any, value: Any) -> None:
        if len(self.data) >= self.bound:
            self.data.clear()
        self.data[key] = value


class ClearingTtl(ClearingDict):
    """``serve.market_gateway.TtlCache``'s storage: entries older than ``ttl_s`` miss."""

    def __init__(self, bound: int, clock: Callable[[], float], ttl_s: float = TTL_S) -> None:
        super().__init__(bound)
        self.ttl_s = ttl_s
        self.clock = clock

    def get(self, key: Any) -> Any:
        entry = self.data.get(key)
        if entry is not None and self.clock() - entry[0] < self.ttl_s:
            return entry[1]
        return None

    def put(self, key: Any, value: Any) -> None:
        super().put(key, (self.clock(), value))


class Maintained:
    """cachetools' cache behind the same two calls."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def get(self, key: Any) -> Any:
        return self.cache.get(key)

    def put(self, key: Any, value: Any) -> None:
        self.cache[key] = value


def zipf_keys(n_keys: int, lookups: int, seed: int = 7) -> list[int]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_keys + 1) ** 1.1
    keys = rng.choice(n_keys, size=lookups, p=weights / weights.sum())
    return [int(k) for k in keys]


def miss_rate(make: Callable[[Clock], Any], keys: list[int]) -> float:
    clock = Clock()
    cache = make(clock)
    misses = 0
    for key in keys:
        clock.now += 1.0 / LOOKUPS_PER_S
        if cache.get(key) is None:
            misses += 1
            cache.put(key, key)
    return misses / len(keys)


def hit_ns(make: Callable[[Clock], Any], bound: int, lookups: int) -> float:
    cache = make(Clock())  # time stands still: every lookup hits
    keys = list(range(bound // 2))
    for key in keys:
        cache.put(key, key)
    sequence = [keys[i % len(keys)] for i in range(lookups)]
    best = float("inf")
    for _ in range(5):
        get = cache.get
        start = time.perf_counter_ns()
        for key in sequence:
            get(key)
        best = min(best, (time.perf_counter_ns() - start) / lookups)
    return best


def token_decode_us(repeats: int = 2_000) -> float:
    """What a verified-token miss costs: TokenSigner's full verification of a new token."""
    from serve.auth import TokenSigner  # noqa: PLC0415 - only this figure needs serve

    issuer = TokenSigner("bench-secret-0123456789abcdef0123456789")
    tokens = [issuer.issue("viewer", f"user{i}") for i in range(repeats)]
    verifier = TokenSigner("bench-secret-0123456789abcdef0123456789")
    start = time.perf_counter_ns()
    for token in tokens:
        verifier.verify(token)
    return (time.perf_counter_ns() - start) / repeats / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=300_000)
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "bounded_caches", "lookups": args.lookups,
                           "zipf_s": 1.1, "results": {}}
    for name, (bound, miss_cost) in CACHES.items():
        ttl = name == "gateway_chain_ttl"

        def maintained(clock: Clock, bound: int = bound, ttl: bool = ttl) -> Maintained:
            return Maintained(TTLCache(bound, TTL_S, timer=clock) if ttl else LRUCache(bound))

        def clearing(clock: Clock, bound: int = bound, ttl: bool = ttl) -> ClearingDict:
            return ClearingTtl(bound, clock) if ttl else ClearingDict(bound)

        over = zipf_keys(int(bound * 1.5), args.lookups)
        under = zipf_keys(bound // 2, args.lookups)
        result = {
            "bound": bound, "miss_costs": miss_cost,
            "hit_ns": {"dict_clear": round(hit_ns(clearing, bound, args.lookups), 1),
                       "cachetools": round(hit_ns(maintained, bound, args.lookups), 1)},
            "miss_rate_working_set_1_5x": {"dict_clear": round(miss_rate(clearing, over), 4),
                                           "cachetools": round(miss_rate(maintained, over), 4)},
            "miss_rate_working_set_0_5x": {"dict_clear": round(miss_rate(clearing, under), 4),
                                           "cachetools": round(miss_rate(maintained, under),
                                                               4)},
        }
        result["hit_cost_ratio_cachetools_to_dict"] = round(
            result["hit_ns"]["cachetools"] / result["hit_ns"]["dict_clear"], 2)
        out["results"][name] = result
    out["miss_cost_us"] = {"verified_tokens": round(token_decode_us(), 1)}
    out["note"] = ("a hit costs hit_ns; a miss costs hit_ns plus the miss cost: compare "
                   "hit_ns difference against miss_rate difference x miss cost")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
