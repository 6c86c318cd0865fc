"""Signal kernels against plain numpy expressions of their documented rules."""

from __future__ import annotations

import numpy as np
import pytest

from market.research.strategies import LONG, SHORT, cross_signals


@pytest.mark.parametrize("n", [0, 1, 2, 500])
def test_cross_signals_equal_numpy_crossover_with_ties_and_nans(n: int) -> None:
    rng = np.random.default_rng(n)
    a = np.round(rng.normal(0, 1, n), 1)  # one decimal: many exact ties
    b = np.round(rng.normal(0, 1, n), 1)
    a[rng.random(n) < 0.05] = np.nan
    expected = np.zeros(n, dtype=np.int8)
    if n > 1:
        up = (a[:-1] < b[:-1]) & (a[1:] > b[1:])
        down = (a[:-1] > b[:-1]) & (a[1:] < b[1:])
        expected[1:] = np.where(up, LONG, np.where(down, SHORT, 0))
    signals = cross_signals(a, b)
    np.testing.assert_array_equal(signals, expected)
    if n == 500:
        assert (signals == LONG).sum() > 20
        assert (signals == SHORT).sum() > 20
