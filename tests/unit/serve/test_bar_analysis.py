"""The assistant's bar analysis: patterns and the price/volume summary, JSON-ready."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from core.models import Bar, BarsResponse
from market.analysis import price_volume_summary
from serve.bar_analysis import BARS_FOR_ANALYSIS, quant_analysis

OPEN = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)


def _bars(count: int, seed: int = 4) -> BarsResponse:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, count)))
    rows = []
    for i, c in enumerate(close):
        day, minute = divmod(i, BARS_FOR_ANALYSIS)
        o = close[i - 1] if i else c
        rows.append(Bar(timestamp=OPEN + timedelta(days=day, minutes=minute), open=o,
                        high=max(o, c) * 1.0005, low=min(o, c) * 0.9995, close=c,
                        volume=float(rng.integers(1_000, 5_000))))
    return BarsResponse(symbol="AAPL", timeframe="1m", bars=rows)


def test_no_bars_give_no_patterns_and_no_summary() -> None:
    assert quant_analysis(BarsResponse(symbol="AAPL", timeframe="1m", bars=[])) == ([], {})


def test_the_summary_covers_the_last_session_and_is_plain_json() -> None:
    bars = _bars(2 * BARS_FOR_ANALYSIS)
    last = bars.bars[-BARS_FOR_ANALYSIS:]

    patterns, analysis = quant_analysis(bars)

    expected = price_volume_summary(*(np.array([getattr(b, f) for b in last])
                                      for f in ("open", "high", "low", "close", "volume")))
    assert analysis["bars"] == BARS_FOR_ANALYSIS
    assert analysis["last_close"] == expected["last_close"]
    assert analysis["range_high"] == expected["range_high"]
    assert isinstance(patterns, list)
    json.dumps([patterns, analysis], allow_nan=False)  # no NaN, no numpy types


def test_relative_volume_appears_only_with_an_earlier_session_to_compare() -> None:
    _, one_session = quant_analysis(_bars(BARS_FOR_ANALYSIS))
    _, two_sessions = quant_analysis(_bars(2 * BARS_FOR_ANALYSIS))

    assert two_sessions["cumulative_relative_volume"] is not None
    assert two_sessions["cumulative_relative_volume"] > 0
    assert one_session.get("cumulative_relative_volume") is None
