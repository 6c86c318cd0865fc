"""The composer: exact figures, what they mean, the expiry used, and nothing guessed."""

from __future__ import annotations

import math
from typing import Any

from rag.answers.compose import compose
from rag.answers.facts import SymbolData
from rag.answers.intents import recognise
from rag.grounding import extract_figures, figure_matches

TRACKED = ("AAPL", "MSFT")


def _data(symbol: str, rsi: float, price: float = 189.37, **options: Any) -> SymbolData:
    market = {"symbol": symbol, "price": price, "change_percent": -1.25,
              "previous_close": 191.77, "timestamp": "2026-12-01T15:30:00Z",
              "indicators": {"rsi_14": rsi, "macd": 0.41, "macd_signal": 0.35,
                             "stoch_k": 85.0, "stoch_d": 80.0, "adx_14": 18.0}}
    terms = [{"expiration": "2026-12-04", "days_to_expiry": 3, "atm_iv": 0.2431,
              "skew_25d": None, "max_pain": 190.0},
             {"expiration": "2026-12-11", "days_to_expiry": 10, "atm_iv": 0.2318,
              "skew_25d": 0.0287, "put_iv_25d": 0.245, "call_iv_25d": 0.2163,
              "max_pain": 187.5}]
    chain = {"underlying_price": price, "term_structure": terms,
             "put_call": {"volume_ratio": 1.25, "open_interest_ratio": 0.8,
                          "call_volume": 100.0, "put_volume": 125.0,
                          "call_open_interest": 1000.0, "put_open_interest": 800.0},
             **options}
    return SymbolData(symbol, market, chain)


def _shows(text: str, value: float) -> bool:
    return any(figure_matches(f, value) for f in extract_figures(text))


def test_rsi_above_seventy_is_called_overbought_with_its_exact_value() -> None:
    composed = compose(recognise("Is AAPL overbought?", TRACKED), [_data("AAPL", 72.4)])
    assert "RSI(14) is 72.4, above the usual overbought line of 70: overbought" in composed.text
    assert "as of 2026-12-01 15:30 UTC" in composed.text
    [rsi] = [q for q in composed.quantities() if q.name == "rsi_14"]
    assert rsi.value == 72.4
    assert rsi.source == "market.indicators.rsi_14"


def test_expected_move_by_friday_uses_that_expiry_and_says_so() -> None:
    ask = recognise("What move do options imply for AAPL by Friday?", TRACKED)
    composed = compose(ask, [_data("AAPL", 50.0)])
    move = 189.37 * 0.2431 * math.sqrt(3 / 365)  # spot x ATM IV x sqrt(days / 365)
    assert f"±${move:.2f}" in composed.text
    assert f"±{move / 189.37 * 100:.2f}%" in composed.text
    assert "Friday 4 December 2026 expiry (3 days out" in composed.text
    assert composed.expiries == {"AAPL": "2026-12-04"}


def test_missing_figure_is_said_unavailable_not_guessed() -> None:
    data = _data("AAPL", 50.0)
    data.options = {**data.options, "term_structure": [
        {**row, "skew_25d": None} for row in data.options["term_structure"]]}
    composed = compose(recognise("AAPL skew?", TRACKED), [data])
    assert "25-delta skew" in composed.text
    assert "is not available" in composed.text
    assert composed.unavailable == ["AAPL:skew"]
    assert not [q for q in composed.quantities() if q.name == "skew_25d"]


def test_skew_falls_to_the_expiry_that_has_one() -> None:
    composed = compose(recognise("AAPL skew by Friday", TRACKED), [_data("AAPL", 50.0)])
    assert "+2.87 vol points" in composed.text
    assert "put IV 24.50% minus call IV 21.63%" in composed.text
    assert "puts are richer than calls" in composed.text
    assert composed.expiries == {"AAPL": "2026-12-11"}


def test_comparison_names_both_figures_and_the_higher_one() -> None:
    ask = recognise("Compare AAPL and MSFT RSI", TRACKED)
    composed = compose(ask, [_data("AAPL", 72.4), _data("MSFT", 52.6, price=415.12)])
    assert "AAPL's RSI(14) is 72.4" in composed.text
    assert "MSFT's RSI(14) is 52.6" in composed.text
    assert "Of the two, AAPL is higher on this measure (72.4 against MSFT's 52.6)" \
        in composed.text


def test_put_call_ratio_states_both_ratios_and_totals() -> None:
    composed = compose(recognise("SPY put/call ratio", ("SPY",)), [_data("SPY", 50.0)])
    assert "put/call volume ratio is 1.25 (125 puts against 100 calls traded)" in composed.text
    assert "put/call open-interest ratio is 0.80" in composed.text
    assert "more puts than calls" in composed.text


def test_every_figure_of_a_composed_answer_is_one_of_its_quantities_or_a_threshold() -> None:
    ask = recognise("AAPL momentum, trend strength and options next week", TRACKED)
    composed = compose(ask, [_data("AAPL", 28.0)])
    values = [q.value for q in composed.quantities()]
    # Thresholds (30/70, 20/80, 20/25), indicator periods, the as-of date and time, days
    # to expiry, the spot and its distance from max pain.
    allowed = [*values, 30, 70, 20, 80, 25, 12, 26, 9, 14, 5, 2026, 12, 1, 15, 11, 10, 3,
               189.37, 1.87]
    for figure in extract_figures(composed.text):
        if math.isnan(figure.value):
            continue
        assert any(figure_matches(figure, v) for v in allowed), figure.text
