"""market.indicators against TA-Lib on random bars: values and warm-up NaNs."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from market import indicators as ind


def _bars(n: int, seed: int, level: float = 100.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    spread = close * rng.uniform(0.0, 0.01, n)
    high = close + spread * rng.uniform(0, 1, n)
    low = close - spread * rng.uniform(0, 1, n)
    volume = rng.integers(0, 100_000, n).astype(float)
    return {"high": high, "low": low, "close": close, "volume": volume}


def _assert_matches(ours: np.ndarray, theirs: np.ndarray, scale: float = 1.0) -> None:
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(theirs)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-9, atol=1e-12 * scale)


CASES = [
    ("sma", lambda b: ind.sma(b["close"]), lambda b: talib.SMA(b["close"])),
    ("sma_20", lambda b: ind.sma(b["close"], 20), lambda b: talib.SMA(b["close"], 20)),
    ("ema", lambda b: ind.ema(b["close"]), lambda b: talib.EMA(b["close"])),
    ("ema_20", lambda b: ind.ema(b["close"], 20), lambda b: talib.EMA(b["close"], 20)),
    ("rsi", lambda b: ind.rsi(b["close"]), lambda b: talib.RSI(b["close"])),
    ("rsi_5", lambda b: ind.rsi(b["close"], 5), lambda b: talib.RSI(b["close"], 5)),
    ("atr", lambda b: ind.atr(b["high"], b["low"], b["close"]),
     lambda b: talib.ATR(b["high"], b["low"], b["close"])),
    ("obv", lambda b: ind.obv(b["close"], b["volume"]),
     lambda b: talib.OBV(b["close"], b["volume"])),
    ("adx", lambda b: ind.adx(b["high"], b["low"], b["close"]),
     lambda b: talib.ADX(b["high"], b["low"], b["close"])),
    ("adx_7", lambda b: ind.adx(b["high"], b["low"], b["close"], 7),
     lambda b: talib.ADX(b["high"], b["low"], b["close"], 7)),
]
MULTI = [
    ("macd", lambda b: ind.macd(b["close"]), lambda b: talib.MACD(b["close"])),
    ("macd_5_35_5", lambda b: ind.macd(b["close"], 5, 35, 5),
     lambda b: talib.MACD(b["close"], 5, 35, 5)),
    ("bbands", lambda b: ind.bbands(b["close"]), lambda b: talib.BBANDS(b["close"])),
    ("bbands_5_1_3", lambda b: ind.bbands(b["close"], 5, 1.0, 3.0),
     lambda b: talib.BBANDS(b["close"], 5, 1.0, 3.0)),
    ("stoch", lambda b: ind.stoch(b["high"], b["low"], b["close"]),
     lambda b: talib.STOCH(b["high"], b["low"], b["close"])),
    ("stoch_14_3_5", lambda b: ind.stoch(b["high"], b["low"], b["close"], 14, 3, 5),
     lambda b: talib.STOCH(b["high"], b["low"], b["close"], 14, 3, 0, 5, 0)),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_single_output_matches_talib(name: str, ours, theirs, seed: int) -> None:  # type: ignore[no-untyped-def]
    bars = _bars(3000, seed, level=10.0 ** seed)

    _assert_matches(ours(bars), theirs(bars), scale=10.0 ** seed)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("name", "ours", "theirs"), MULTI, ids=[c[0] for c in MULTI])
def test_multi_output_matches_talib(name: str, ours, theirs, seed: int) -> None:  # type: ignore[no-untyped-def]
    bars = _bars(3000, seed, level=10.0 ** seed)

    for a, b in zip(ours(bars), theirs(bars), strict=True):
        _assert_matches(a, b, scale=10.0 ** seed)


def test_leading_nans_are_skipped_like_talib() -> None:
    bars = _bars(500, seed=4)
    bars["close"][:7] = np.nan
    bars["high"][:3] = np.nan

    _assert_matches(ind.ema(bars["close"], 20), talib.EMA(bars["close"], 20))
    _assert_matches(ind.rsi(bars["close"]), talib.RSI(bars["close"]))
    _assert_matches(ind.atr(bars["high"], bars["low"], bars["close"]),
                    talib.ATR(bars["high"], bars["low"], bars["close"]))
    for a, b in zip(ind.macd(bars["close"]), talib.MACD(bars["close"]), strict=True):
        _assert_matches(a, b)


def test_short_input_is_all_nan_like_talib() -> None:
    bars = _bars(20, seed=5)

    _assert_matches(ind.sma(bars["close"]), talib.SMA(bars["close"]))
    for a, b in zip(ind.macd(bars["close"]), talib.MACD(bars["close"]), strict=True):
        _assert_matches(a, b)
    _assert_matches(ind.adx(bars["high"], bars["low"], bars["close"]),
                    talib.ADX(bars["high"], bars["low"], bars["close"]))


def test_flat_prices_give_talib_zero_conventions() -> None:
    flat = np.full(100, 50.0)

    _assert_matches(ind.rsi(flat), talib.RSI(flat))
    _assert_matches(ind.adx(flat, flat, flat), talib.ADX(flat, flat, flat))
    for a, b in zip(ind.bbands(flat), talib.BBANDS(flat), strict=True):
        _assert_matches(a, b)
    for a, b in zip(ind.stoch(flat, flat, flat), talib.STOCH(flat, flat, flat), strict=True):
        _assert_matches(a, b)


def test_vwap_is_cumulative_typical_price_weighted_by_volume() -> None:
    bars = _bars(200, seed=6)
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    starts = np.zeros(200, bool)
    starts[[0, 120]] = True

    plain = ind.vwap(bars["high"], bars["low"], bars["close"], bars["volume"])
    sessions = ind.vwap(bars["high"], bars["low"], bars["close"], bars["volume"], starts)

    expected = np.cumsum(typical * bars["volume"]) / np.cumsum(bars["volume"])
    np.testing.assert_allclose(plain, expected, rtol=1e-12)
    np.testing.assert_allclose(sessions[:120], expected[:120], rtol=1e-12)
    second = slice(120, None)
    np.testing.assert_allclose(
        sessions[second],
        np.cumsum(typical[second] * bars["volume"][second]) / np.cumsum(bars["volume"][second]),
        rtol=1e-12)


def test_vwap_without_volume_is_nan() -> None:
    v = ind.vwap([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.0])

    assert np.isnan(v).all()


def test_bad_period_raises_value_error() -> None:
    with pytest.raises(ValueError, match="period"):
        ind.rsi(np.ones(10), 0)
