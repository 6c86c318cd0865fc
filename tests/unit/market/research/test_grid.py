"""Parameter grids from NAME=START:STOP:STEP specs and the strategies' defaults."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from market.research.grid import build_grid, parse_values
from market.research.strategies import get


def test_range_includes_stop_when_steps_land_on_it() -> None:
    assert parse_values("fast=5:50:5") == ("fast", [float(v) for v in range(5, 55, 5)])
    assert parse_values("width=1:2:0.4")[1] == [1.0, 1.4, 1.8]
    assert parse_values("slow=30") == ("slow", [30.0])


@pytest.mark.parametrize("spec", ["fast", "fast=a:b:c", "fast=5:1:1", "fast=1:5:0", "fast=1:2"])
def test_malformed_param_raises_invalid_input(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_values(spec)


def test_grid_drops_invalid_pairs_and_fills_defaults() -> None:
    grid = build_grid(get("sma_cross"), ["fast=10:30:10", "slow=20:30:10"])
    assert [(g["fast"], g["slow"]) for g in grid] == [(10, 20), (10, 30), (20, 30)]
    rsi = build_grid(get("rsi_reversion"), ["period=7:14:7"])
    assert rsi == [{"period": 7, "lower": 30, "upper": 70}, {"period": 14, "lower": 30,
                                                            "upper": 70}]
    with pytest.raises(InvalidInput, match="no parameter"):
        build_grid(get("sma_cross"), ["lookback=3"])
