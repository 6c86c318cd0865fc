"""The quality gate: what stops a model's sentence, and what the user gets instead."""

from __future__ import annotations

import pytest

from rag.answers.compose import compose
from rag.answers.facts import SymbolData
from rag.answers.gate import SentenceGate, gate_text, split_sentences
from rag.answers.intents import recognise

TRACKED = ("AAPL", "MSFT", "SPY")
QUESTION = "Is AAPL overbought, and what is the put/call open interest ratio?"


def _gate(question: str = QUESTION) -> SentenceGate:
    data = SymbolData("AAPL", {
        "symbol": "AAPL", "price": 189.37, "timestamp": "2026-12-01T15:30:00Z",
        "indicators": {"rsi_14": 72.4}}, {
        "put_call": {"volume_ratio": 0.82, "open_interest_ratio": 1.25}})
    ask = recognise(question, TRACKED)
    return SentenceGate(compose(ask, [data]), ask.topics, ask.symbols, question,
                        ["Gross margin was 46.2% in fiscal 2024."])


GOOD = ("AAPL looks overbought: its RSI(14) is 72.4, above 70. The put/call open-interest "
        "ratio is 1.25 and the put/call volume ratio 0.82.")


def test_model_text_with_every_fact_passes_unchanged() -> None:
    text, decision = gate_text(GOOD, _gate())
    assert text == GOOD
    assert decision.source == "model"
    assert decision.reasons == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("[Paste this sentence here]", "placeholder"),
        ("Options Primer for Marketray Users, page 3: Options Primer, page 1: notes.",
         "boilerplate"),
        ("As an AI language model I cannot say.", "boilerplate"),
        ("ApexSpan is a leading provider of widgets.", "unknown_name"),
        ("AAPL's RSI is approximately 1.00.", "wrong_figure"),
        ("AAPL is overbought with a value of 13.00.", "unsupported_figure"),
        ("The put/call open-interest ratio is 1.00:1.", "wrong_figure"),
        ("AAPL could move $72.4 this week.", "unsupported_figure"),  # 72.4 is the RSI
    ],
)
def test_faulty_sentence_is_stopped_and_replaced_by_composed_facts(bad: str,
                                                                   reason: str) -> None:
    text, decision = gate_text(f"{bad} {GOOD}", _gate())
    assert bad not in text
    assert any(r.startswith(reason) for r in decision.reasons), decision.reasons
    assert decision.source == "composed"  # nothing before the fault was accepted
    assert "RSI(14) is 72.4" in text
    assert "open-interest ratio is 1.25" in text


def test_repeated_sentence_is_stopped_after_the_first() -> None:
    sentence = "AAPL's RSI(14) is 72.4, overbought."
    text, decision = gate_text(" ".join([sentence] * 3), _gate("Is AAPL overbought?"))
    assert text.count(sentence) == 1
    assert "repetition" in decision.reasons
    assert decision.source == "model"


def test_missing_quantity_is_filled_from_the_composed_answer() -> None:
    text, decision = gate_text("AAPL's RSI(14) is 72.4, above the overbought line.", _gate())
    assert text.startswith("AAPL's RSI(14) is 72.4")
    assert "open-interest ratio is 1.25" in text
    assert decision.source == "model+composed"
    assert "missing: AAPL put_call_open_interest_ratio" in decision.reasons
    assert decision.filled[-1] == "as_of"


def test_answer_that_never_names_the_symbol_is_off_topic() -> None:
    text, decision = gate_text("The RSI(14) is 72.4. The put/call open-interest ratio is "
                               "1.25 and the volume ratio 0.82.", _gate())
    assert "off_topic: AAPL not named" in decision.reasons
    assert "AAPL" in text


def test_evidence_figures_are_supported() -> None:
    gate = _gate()
    assert gate.screen("AAPL's gross margin was 46.2% in fiscal 2024.") == []


def test_streaming_releases_sentences_as_they_finish() -> None:
    gate = _gate()
    released = []
    for piece in ["AAPL's RSI(14) ", "is 72.4. The put/call", " open-interest ratio is 1.25",
                  " and the volume ratio 0.82."]:
        released.extend(gate.feed(piece))
    assert released == ["AAPL's RSI(14) is 72.4."]
    rest, decision = gate.finish()
    assert rest == ["The put/call open-interest ratio is 1.25 and the volume ratio 0.82."]
    assert decision.source == "model"


def test_run_on_text_without_a_sentence_end_stops_the_model() -> None:
    gate = _gate()
    for _ in range(200):
        gate.feed(" word")
    assert gate.stopped
    assert "run_on: no sentence end" in gate.reasons


def test_split_sentences_keeps_decimals_and_prices_whole() -> None:
    assert split_sentences("RSI is 72.4. Move ±$4.10 by Friday. Done!") == [
        "RSI is 72.4.", "Move ±$4.10 by Friday.", "Done!"]
