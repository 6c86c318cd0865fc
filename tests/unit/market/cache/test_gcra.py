"""GCRA: bursts, the wait until the next unit, several quotas charged together, cost."""

from __future__ import annotations

import pytest

from market.cache.gcra import Quota, take


def test_gcra_allows_the_burst_then_refuses_with_the_wait_until_the_next_unit():
    # Arrange: 10 units per 60 s, one key
    quota, tat, now = Quota(10, 60.0), None, 1000.0
    allowed = 0
    for _ in range(10):
        decision, tats = take([tat], now, 1, [quota])
        tat = tats[0] if tats else tat
        allowed += decision.allowed
    # Act
    refused, unchanged = take([tat], now, 1, [quota])
    later, _ = take([tat], now + refused.retry_after_s, 1, [quota])
    # Assert: the 11th waits one emission interval (6 s), and then passes
    assert allowed == 10
    assert not refused.allowed
    assert unchanged is None
    assert refused.retry_after_s == pytest.approx(6.0)
    assert later.allowed


def test_gcra_charges_every_quota_or_none():
    small, large = Quota(2, 60.0), Quota(100, 60.0)
    decision, tats = take([None, None], 0.0, 3, [small, large])
    assert not decision.allowed
    assert tats is None  # the large quota was not charged either
    decision, tats = take([None, None], 0.0, 2, [small, large])
    assert decision.allowed
    assert decision.remaining == 0
    assert decision.limit == 2  # the binding quota is reported


def test_gcra_cost_scales_the_charge():
    decision, _ = take([None], 0.0, 5, [Quota(20, 60.0)])
    assert decision.remaining == 15
