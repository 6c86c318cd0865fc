"""Shard's whole-chain JSON cache: bounded, least recently used out first, versioned."""

import orjson

from market.shard import CHAIN_CACHE_PER_SYMBOL, CHAIN_CACHE_SPARE, ChainFilter, Shard
from tests.unit.market.feed_stubs import T0, chain, option_quotes, ticks

BOUND = CHAIN_CACHE_PER_SYMBOL * 1 + CHAIN_CACHE_SPARE


def one_chain_shard(monkeypatch):
    shard = Shard(["AAPL"], ["AAPL"])
    shard.ingest(ticks([0], T0 + 1), option_quotes(0, T0 + 1), None, {"AAPL": chain("AAPL")})
    encoded = []
    contracts = shard.contracts

    def counting(symbol, rows):
        encoded.append(symbol)
        return contracts(symbol, rows)

    monkeypatch.setattr(shard, "contracts", counting)
    return shard, encoded


def test_hot_chain_stays_cached_while_many_filters_churn(monkeypatch):
    shard, encoded = one_chain_shard(monkeypatch)
    hot = ChainFilter()
    first = shard.chain_json("AAPL", hot)
    for i in range(3 * BOUND):  # far more distinct filters than the bound
        shard.chain_json("AAPL", ChainFilter(min_strike=float(i)))
        assert shard.chain_json("AAPL", hot) is first  # never evicted: used every time
    assert len(shard._chain_cache) == BOUND
    assert encoded.count("AAPL") == 1 + 3 * BOUND  # the hot chain was encoded once


def test_new_chain_version_is_encoded_again(monkeypatch):
    shard, encoded = one_chain_shard(monkeypatch)
    before = orjson.loads(shard.chain_json("AAPL", ChainFilter()))
    shard.ingest(None, option_quotes(0, T0 + 2), None, {"AAPL": chain("AAPL")})
    after = shard.chain_json("AAPL", ChainFilter())
    assert len(encoded) == 2
    assert orjson.loads(after)["contracts"][0]["strike"] == before["contracts"][0]["strike"]
