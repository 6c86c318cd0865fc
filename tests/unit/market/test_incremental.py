"""market.incremental.IndicatorBank: step-by-step equality with the batch functions."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from market import indicators as ind
from market.incremental import INDICATOR_NAMES, IndicatorBank


def _bars(m: int, n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (m, n)), axis=1))
    high = close * (1 + rng.uniform(0, 0.01, (m, n)))
    low = close * (1 - rng.uniform(0, 0.01, (m, n)))
    volume = rng.integers(0, 10_000, (m, n)).astype(float)
    return high, low, close, volume


def _batch(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray,
           starts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    ref = {"sma_20": ind.sma(c, 20), "ema_20": ind.ema(c, 20), "rsi_14": ind.rsi(c, 14)}
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = ind.macd(c, 12, 26, 9)
    ref["bb_upper"], ref["bb_middle"], ref["bb_lower"] = ind.bbands(c, 20, 2.0, 2.0)
    ref["atr_14"] = ind.atr(h, lo, c, 14)
    ref["vwap"] = ind.vwap(h, lo, c, v, starts)
    ref["stoch_k"], ref["stoch_d"] = ind.stoch(h, lo, c, 5, 3, 3)
    ref["obv"] = ind.obv(c, v)
    ref["adx_14"] = ind.adx(h, lo, c, 14)
    return ref


def _assert_columns_match(values: np.ndarray, ref: dict[str, np.ndarray]) -> None:
    for j, name in enumerate(INDICATOR_NAMES):
        np.testing.assert_array_equal(np.isnan(values[:, j]), np.isnan(ref[name]), err_msg=name)
        ok = ~np.isnan(ref[name])
        np.testing.assert_allclose(values[ok, j], ref[name][ok], rtol=1e-9, atol=1e-10,
                                   err_msg=name)


def test_interleaved_updates_equal_batch_at_every_step() -> None:
    m, n = 6, 300
    high, low, close, volume = _bars(m, n, seed=31)
    bank = IndicatorBank(m)
    got = np.full((m, n, len(INDICATOR_NAMES)), np.nan)
    position = np.zeros(m, int)
    rng = np.random.default_rng(32)

    while (position < n).any():
        slots = rng.choice(np.flatnonzero(position < n), size=rng.integers(1, 30))
        rows = []
        for s in slots:  # a slot may appear several times in one batch
            if position[s] < n:
                rows.append((s, position[s]))
                position[s] += 1
        s_idx = np.array([r[0] for r in rows], np.int32)
        t_idx = np.array([r[1] for r in rows])
        out = bank.update(s_idx, high[s_idx, t_idx], low[s_idx, t_idx], close[s_idx, t_idx],
                          volume[s_idx, t_idx])
        got[s_idx, t_idx] = out

    for s in range(m):
        _assert_columns_match(got[s], _batch(high[s], low[s], close[s], volume[s]))


def test_bank_matches_talib_directly() -> None:
    high, low, close, volume = _bars(1, 200, seed=33)
    bank = IndicatorBank(1)

    out = bank.update(np.zeros(200, np.int32), high[0], low[0], close[0], volume[0])

    col = {name: out[:, j] for j, name in enumerate(INDICATOR_NAMES)}
    for ours, theirs in [
        (col["sma_20"], talib.SMA(close[0], 20)), (col["ema_20"], talib.EMA(close[0], 20)),
        (col["rsi_14"], talib.RSI(close[0], 14)), (col["macd"], talib.MACD(close[0])[0]),
        (col["bb_lower"], talib.BBANDS(close[0], 20, 2, 2)[2]),
        (col["atr_14"], talib.ATR(high[0], low[0], close[0], 14)),
        (col["stoch_d"], talib.STOCH(high[0], low[0], close[0])[1]),
        (col["obv"], talib.OBV(close[0], volume[0])),
        (col["adx_14"], talib.ADX(high[0], low[0], close[0], 14)),
    ]:
        ok = ~np.isnan(theirs)
        np.testing.assert_array_equal(np.isnan(ours), ~ok)
        np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-9, atol=1e-10)


def test_peek_gives_next_update_without_mutating_state() -> None:
    high, low, close, volume = _bars(1, 60, seed=34)
    bank = IndicatorBank(2)
    bank.update(np.zeros(59, np.int32), high[0, :59], low[0, :59], close[0, :59],
                volume[0, :59])
    before = bank.values(0)

    peeked = bank.peek(0, high[0, 59], low[0, 59], close[0, 59], volume[0, 59])
    peeked_again = bank.peek(0, high[0, 59], low[0, 59], close[0, 59], volume[0, 59])
    committed = bank.update(np.zeros(1, np.int32), high[0, 59:], low[0, 59:], close[0, 59:],
                            volume[0, 59:])[0]

    assert bank.bars(0) == 60
    assert peeked == peeked_again
    np.testing.assert_array_equal(np.array(list(peeked.values())), committed)
    assert np.array(list(before.values())) != pytest.approx(committed)
    np.testing.assert_array_equal(np.array(list(bank.values(0).values())), committed)


def test_reset_session_restarts_vwap_only() -> None:
    high, low, close, volume = _bars(1, 80, seed=35)
    starts = np.zeros(80, bool)
    starts[[0, 50]] = True
    bank = IndicatorBank(1)

    first = bank.update(np.zeros(50, np.int32), high[0, :50], low[0, :50], close[0, :50],
                        volume[0, :50])
    bank.reset_session(np.array([0], np.int32))
    second = bank.update(np.zeros(30, np.int32), high[0, 50:], low[0, 50:], close[0, 50:],
                         volume[0, 50:])

    _assert_columns_match(np.vstack([first, second]),
                          _batch(high[0], low[0], close[0], volume[0], starts))


def test_reset_forgets_a_slot_and_leaves_others() -> None:
    high, low, close, volume = _bars(2, 40, seed=36)
    bank = IndicatorBank(2)
    both = np.array([0, 1] * 40, np.int32)
    t = np.repeat(np.arange(40), 2)
    bank.update(both, high[both, t], low[both, t], close[both, t], volume[both, t])

    bank.reset(np.array([0], np.int32))
    again = bank.update(np.zeros(40, np.int32), high[1], low[1], close[1], volume[1])

    assert bank.bars(0) == 40
    _assert_columns_match(again, _batch(high[1], low[1], close[1], volume[1]))
    assert bank.values(1)["obv"] == pytest.approx(again[-1, INDICATOR_NAMES.index("obv")])


def test_bad_bar_is_skipped_and_repeats_last_values() -> None:
    high, low, close, volume = _bars(1, 30, seed=37)
    bank = IndicatorBank(1)
    bank.update(np.zeros(30, np.int32), high[0], low[0], close[0], volume[0])
    last = bank.values(0)

    out = bank.update(np.zeros(2, np.int32), np.array([np.nan, 1.0]), np.array([1.0, 1.0]),
                      np.array([1.0, 1.0]), np.array([1.0, -5.0]))

    assert bank.bars(0) == 30
    np.testing.assert_array_equal(out[0], np.array(list(last.values())))
    np.testing.assert_array_equal(out[1], np.array(list(last.values())))


def test_fresh_slot_is_all_nan_and_out_of_range_slot_raises() -> None:
    bank = IndicatorBank(3)

    assert all(np.isnan(v) for v in bank.values(2).values())
    with pytest.raises(IndexError):
        bank.update(np.array([3], np.int32), np.ones(1), np.ones(1), np.ones(1), np.ones(1))


def test_replacing_the_last_bar_gives_the_values_of_a_series_that_had_it_all_along() -> None:
    # Arrange: 3 slots; after every commit of slot 0 the bar is replaced (once or twice,
    # like a vendor's bar and then its correction), and slots 1-2 keep committing between
    high, low, close, volume = _bars(3, 120, seed=41)
    vendor = _bars(3, 120, seed=42)
    bank = IndicatorBank(3)
    got = np.full((120, len(INDICATOR_NAMES)), np.nan)
    # Act
    for t in range(120):
        bank.update(np.array([0, 1, 2], np.int32), high[:, t], low[:, t], close[:, t],
                    volume[:, t])
        for _ in range(1 + t % 2):
            done, values = bank.replace_last(np.array([0], np.int32), vendor[0][0, t:t + 1],
                                             vendor[1][0, t:t + 1], vendor[2][0, t:t + 1],
                                             vendor[3][0, t:t + 1])
            assert done.tolist() == [True]
        got[t] = values[0]
    # Assert: slot 0 matches the batch indicators over the vendor's bars; the others their own
    _assert_columns_match(got, _batch(vendor[0][0], vendor[1][0], vendor[2][0], vendor[3][0]))
    np.testing.assert_allclose(got[-1, INDICATOR_NAMES.index("adx_14")],
                               talib.ADX(vendor[0][0], vendor[1][0], vendor[2][0], 14)[-1],
                               rtol=1e-9)
    slot1 = bank.update(np.array([1], np.int32), high[1, -1:], low[1, -1:], close[1, -1:],
                        volume[1, -1:])
    expected = _batch(*(np.r_[a[1], a[1, -1]] for a in (high, low, close, volume)))
    np.testing.assert_allclose(slot1[0, 0], expected["sma_20"][-1], rtol=1e-9)


def test_replace_last_refuses_what_it_cannot_do_in_place() -> None:
    # Arrange: slot 0 never committed, slot 1 skipped its last (bad) bar, slot 2 reset
    high, low, close, volume = _bars(3, 30, seed=43)
    bank = IndicatorBank(4)
    bank.update(np.array([1, 2, 3] * 30, np.int32), *(a.T.ravel() for a in (high, low, close,
                                                                            volume)))
    bank.update(np.array([1], np.int32), [np.nan], [1.0], [1.0], [1.0])
    bank.reset([2])
    before = bank.values(3)
    # Act
    done, values = bank.replace_last(np.array([0, 1, 2, 3, 3], np.int32), np.full(5, 101.0),
                                     np.full(5, 99.0), np.full(5, 100.0), np.full(5, 10.0))
    # Assert: nothing was done (slot 3 appears twice) and no state changed
    assert done.tolist() == [False] * 5
    assert np.isnan(values).all()
    np.testing.assert_array_equal(list(bank.values(3).values()), list(before.values()))
