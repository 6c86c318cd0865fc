"""The Redis tick journal's entry encoding (no Redis here; tests/integration has the rest)."""

import numpy as np
import pytest

from market.cache.tick_journal import decode, encode
from market.feeds.base import BarBatch, TickBatch
from tests.unit.market.feed_stubs import T0, bars, ticks


def test_encode_then_decode_gives_the_same_columns_and_dtypes():
    tick_batch = ticks([0, 3, 1], T0 + 17, 101.25)
    tick_batch.bid[1] = 100.5  # a NaN and a number in one column
    for batch, kind in ((tick_batch, TickBatch), (bars(2), BarBatch),
                        (TickBatch.empty(), TickBatch)):
        back = decode(kind, encode(batch))
        for name, dtype in kind.dtypes.items():
            assert back.to_dict()[name].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(back.to_dict()[name], batch.to_dict()[name])


def test_a_truncated_entry_is_refused():
    data = encode(ticks([0, 1], T0))
    with pytest.raises(ValueError, match="does not hold 2 rows"):
        decode(TickBatch, data[:-3])
