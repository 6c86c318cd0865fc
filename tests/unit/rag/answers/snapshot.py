"""A symbol with every figure the answer topics read, and a reader of quantity sources."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from rag.answers.facts import Statement, SymbolData, Writer

_STEP = re.compile(r"\.?([a-z_0-9]+)|\[([^\]]+)\]")


def full_data(symbol: str = "AAPL") -> SymbolData:
    """Return data in the contract's shapes with a value for every topic."""
    market = {"symbol": symbol, "price": 189.37, "change_percent": -1.25,
              "previous_close": 191.77, "low": 187.02, "high": 192.4, "volume": 41_250_000.0,
              "timestamp": "2026-12-01T15:30:00Z",
              "indicators": {"rsi_14": 72.4, "macd": 0.41, "macd_signal": 0.35,
                             "macd_hist": 0.06, "stoch_k": 85.0, "stoch_d": 80.0,
                             "adx_14": 18.0, "sma_20": 188.1, "ema_20": 190.05,
                             "bb_upper": 193.2, "bb_lower": 185.6, "vwap": 188.9,
                             "atr_14": 0.42}}
    terms = [{"expiration": "2026-12-04", "days_to_expiry": 3, "atm_iv": 0.2431,
              "skew_25d": 0.0287, "put_iv_25d": 0.245, "call_iv_25d": 0.2163,
              "max_pain": 190.0},
             {"expiration": "2026-12-11", "days_to_expiry": 10, "atm_iv": 0.2318,
              "skew_25d": 0.031, "put_iv_25d": 0.25, "call_iv_25d": 0.219,
              "max_pain": 187.5}]
    options = {"underlying_price": 189.37, "term_structure": terms, "contracts": 1840,
               "put_call": {"volume_ratio": 1.25, "open_interest_ratio": 0.8,
                            "call_volume": 100.0, "put_volume": 125.0,
                            "call_open_interest": 1000.0, "put_open_interest": 800.0},
               "open_interest_change": {"total": 1500.0, "calls": 2000.0, "puts": -500.0,
                                        "largest": [{"expiration": "2026-12-04",
                                                     "strike": 190.0, "type": "call",
                                                     "change": 900.0}]},
               "exposure": {"total_gamma_exposure": 2.5e9, "call_gamma_exposure": 3.1e9,
                            "put_gamma_exposure": -6.0e8, "total_delta_exposure": -4.2e7},
               "unusual_activity": [{"expiration": "2026-12-11", "strike": 200.0,
                                     "type": "call", "volume": 5200.0,
                                     "open_interest": 1300.0}]}
    analysis = {"realized_volatility": {"390_bars": 0.187},
                "levels": {"support": [{"price": 187.5, "touches": 3}],
                           "resistance": [{"price": 192.0, "touches": 1}],
                           "point_of_control": 189.0},
                "cumulative_relative_volume": 1.4, "relative_volume": 2.3}
    patterns = [{"name": "bullish_engulfing", "direction": "bullish", "bars_ago": 2}]
    return SymbolData(symbol, market, options, analysis, patterns)


def resolve(data: SymbolData, source: str) -> Any:
    """Follow a quantity's source path (``market.indicators.rsi_14``,
    ``options.term_structure[2026-12-04].atm_iv``) through the data; a term-structure
    step in brackets names the expiry, any other the list index."""
    section, _, path = source.partition(".")
    node: Any = {"market": data.market, "options": data.options,
                 "analysis": data.analysis}[section]
    for key, bracket in _STEP.findall(path):
        if key:
            node = node[key]
        elif bracket.isdigit():
            node = node[int(bracket)]
        else:
            node = next(row for row in node if row.get("expiration") == bracket)
    return node


def assert_topic_states_the_data(write: Callable[[Writer], Statement], topic: str) -> None:
    """Write ``topic`` over :func:`full_data`; assert each quantity is shown in the text and
    is the value its source path names (a formula source, with a space or ``len(``, is not
    followed)."""
    data = full_data()
    statement = write(Writer(data))
    assert statement.topic == topic
    assert "not available" not in statement.text
    for q in statement.quantities:
        assert q.shown in statement.text
        if " " not in q.source and not q.source.startswith("len("):
            assert resolve(data, q.source) == pytest.approx(q.value), q.source
