"""The simulated option chains: strike grids."""

from __future__ import annotations

import numpy as np
import pytest

from market.feeds.sim_options import strike_grid


@pytest.mark.parametrize("spot", [4.1, 12.3, 48.0, 145.0, 228.0, 590.0, 1_500.0])
def test_strike_grid_is_round_and_denser_near_the_money(spot: float) -> None:
    strikes = strike_grid(spot)

    assert np.all(np.round(strikes * 2) == strikes * 2)  # multiples of 0.50
    assert strikes.min() <= 0.8 * spot
    assert strikes.max() >= 1.2 * spot
    gaps = np.diff(strikes)
    near = np.abs(strikes[:-1] / spot - 1) < 0.08
    assert gaps[near].max() <= gaps.max()
    assert near.sum() >= (3 if spot >= 25 else 1)  # a $4 stock lists 0.50 apart
