"""The quality gate between a language model's text and the user.

A model may only connect and phrase the composed facts. :class:`SentenceGate` screens
its text one finished sentence at a time, so accepted sentences can stream while the
model writes; the first sentence that fails stops the model. A sentence fails on:

* ``placeholder`` — template text: bracketed words (``[Paste this sentence here]``),
  braces, angle tags, "lorem ipsum", "insert ...", "[figure removed]";
* ``boilerplate`` — assistant filler ("as an AI", "I cannot", "consult a financial
  advisor") or a list of document titles and pages instead of an answer;
* ``repetition`` — a sentence said before, or a phrase of six words said three times;
* ``unknown_name`` — a name (CamelCase word, ticker-like capitals, "X Inc.") that
  neither the question nor the evidence contains: a made-up company;
* ``unsupported_figure`` — a number that is neither one of the composed quantities nor
  a figure of the evidence (passages, question), at the precision it is written;
* ``wrong_figure`` — a sentence naming an asked quantity (e.g. "RSI") whose figures
  are not that quantity's value.

At the end (:meth:`SentenceGate.finish`) every asked quantity (:data:`KEY_QUANTITIES`)
must be stated correctly in the accepted text and every asked symbol named; the
composed statements of any that are missing are appended. The decision says which text
the user got — ``model``, ``model+composed`` or ``composed`` — and why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.answers.compose import Composed
from rag.answers.facts import Quantity, Statement
from rag.grounding import Figure, GroundingChecker, extract_figures, figure_matches
from rag.query import COMPANY_NAMES

# The quantities that answer each topic; the gate requires them, the rest is context.
KEY_QUANTITIES: dict[str, tuple[str, ...]] = {
    "price": ("price", "change_percent"), "rsi": ("rsi_14",), "stochastic": ("stoch_k",),
    "macd": ("macd", "macd_signal"), "moving_average": ("sma_20",), "adx": ("adx_14",),
    "bollinger": ("bb_lower", "bb_upper"), "vwap": ("vwap",), "atr": ("atr_14",),
    "realized_vol": ("realized_volatility",), "levels": ("support", "resistance"),
    "volume": ("volume", "cumulative_relative_volume"), "expected_move": ("expected_move",),
    "implied_vol": ("atm_iv",),
    "put_call": ("put_call_volume_ratio", "put_call_open_interest_ratio"),
    "oi_change": ("oi_change_total",), "max_pain": ("max_pain",), "gamma": ("gamma_exposure",),
    "delta_exposure": ("delta_exposure",), "unusual": ("unusual_count",),
    "skew": ("skew_25d",), "term_structure": ("atm_iv",),
}
# Acronyms an answer may use without the evidence spelling them out.
KNOWN_TERMS = frozenset({
    "RSI", "MACD", "SMA", "EMA", "ADX", "ATR", "VWAP", "IV", "ATM", "OTM", "ITM", "UTC",
    "USD", "ETF", "OI", "GEX", "DEX", "EPS", "US", "NYSE", "NASDAQ", "PCR", "AI", "CEO",
    "SEC", "Q1", "Q2", "Q3", "Q4", "FY", "YOY", "AM", "PM", "ET", "EST", "OK", "II",
})
_PLACEHOLDER = re.compile(
    r"\[(?!\d{1,3}\])[^\]]{0,120}\]|\{[^}]{0,80}\}|<[A-Za-z/][^>]{0,40}>|\blorem ipsum\b"
    r"|\b(?:insert|paste|enter|add) (?:your|the|this|a|an|company|name|text|here)\b"
    r"|\bplaceholder\b|\byour (?:name|company|answer|text)\b|\bX{3,}\b|\bTBD\b|\bTODO\b"
    r"|\?{3,}|_{3,}|\bN/A\b|figure removed", re.IGNORECASE)
_BOILERPLATE = re.compile(
    r"\bas an ai\b|\blanguage model\b|\bi(?:'m| am) (?:sorry|unable|not able)\b"
    r"|\bi (?:cannot|can't|can not)\b|\bconsult (?:a|your) (?:financial|investment)"
    r"|\bnot (?:financial|investment) advice\b|\bi hope this helps\b|\bfeel free to\b"
    r"|(?:\bpage \d+\s*[:,].*){2,}", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9$±+-])")
_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z][A-Za-z]*\b|\b[A-Z]{2,5}\b"
                   r"|\b[A-Z][a-z]+(?= (?:Inc|Corp|Corporation|Ltd|LLC|Holdings)\b)")
MAX_SENTENCE_CHARS = 600
_WORDS = re.compile(r"[a-z0-9$%.±+-]+")


@dataclass
class GateDecision:
    """Which text the user got and why."""

    source: str
    reasons: list[str] = field(default_factory=list)
    rejected: str = ""
    filled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (the rejected text itself is never included)."""
        return {"source": self.source, "reasons": list(self.reasons),
                "filled": list(self.filled)}


def _decimals(shown: str) -> int:
    match = re.search(r"\.(\d+)", shown)
    return len(match.group(1)) if match else 0


def _same_unit(figure: Figure, ref_text: str, ref_percent: bool) -> bool:
    """A percentage shows a percentage and a dollar figure a dollar one ($1.95 is not 1.95%).

    A bare number may show a dollar figure ("189.37" for "$189.37").
    """
    if figure.percent != ref_percent:
        return False
    return "$" not in figure.text or "$" in ref_text


def _states(figure: Figure, quantity: Quantity) -> bool:
    """True when ``figure`` shows the quantity's value, rounded at most one place further."""
    return (figure.decimals >= _decimals(quantity.shown) - 1
            and _same_unit(figure, quantity.shown, "%" in quantity.shown)
            and figure_matches(figure, quantity.value))


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (a decimal point or "$4.10" does not end one)."""
    return [part.strip() for part in _SENTENCE.split(text.strip()) if part.strip()]


def _normal(sentence: str) -> str:
    return " ".join(_WORDS.findall(sentence.lower()))


def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w%])" + re.escape(label.lower()) + r"(?![\w])")


class SentenceGate:
    """Screens a model's text against one composed answer (see the module)."""

    def __init__(self, composed: Composed, topics: Sequence[str], symbols: Sequence[str],
                 question: str, passages: Iterable[str] = ()) -> None:
        self.composed = composed
        self.symbols = tuple(symbols)
        passage_text = "\n".join(passages)
        self.reference = "\n".join([composed.text, passage_text, question])
        self.checker = GroundingChecker(self.reference)
        self.known = set(_NAME.findall(self.reference)) | KNOWN_TERMS | set(symbols)
        self.asked: list[tuple[Statement, Quantity]] = []
        for statement in composed.statements:
            wanted = KEY_QUANTITIES.get(statement.topic, ())
            seen: set[str] = set()
            for quantity in statement.quantities:
                if quantity.name in wanted and quantity.name not in seen:
                    seen.add(quantity.name)
                    self.asked.append((statement, quantity))
        self._labels = {id(q): [_label_pattern(label) for label in q.labels]
                        for _, q in self.asked}
        self.released: list[str] = []
        self.pending = ""
        self.stopped = False
        self.reasons: list[str] = []
        self.rejected = ""
        self.decision = GateDecision("composed", ["the model's text was not screened"])

    # -- per sentence ------------------------------------------------------------------------

    def screen(self, sentence: str) -> list[str]:
        """Return why ``sentence`` may not reach the user (empty: it may)."""
        reasons = []
        if _PLACEHOLDER.search(sentence):
            reasons.append("placeholder")
        if _BOILERPLATE.search(sentence):
            reasons.append("boilerplate")
        normal = _normal(sentence)
        repeated = bool(normal) and normal in {_normal(s) for s in self.released}
        if repeated or self._repeats(" ".join([*self.released, sentence])):
            reasons.append("repetition")
        unknown = [name for name in _NAME.findall(sentence) if name not in self.known
                   and name.upper() not in KNOWN_TERMS]
        if unknown:
            reasons.append(f"unknown_name: {', '.join(dict.fromkeys(unknown))}")
        figures = extract_figures(sentence)
        unsupported = [f.text for f in figures if not self.supported(f)]
        if unsupported:
            reasons.append(f"unsupported_figure: {', '.join(unsupported)}")
        lowered = sentence.lower()
        for _, quantity in self.asked:
            if not any(p.search(lowered) for p in self._labels[id(quantity)]):
                continue
            if figures and not any(_states(f, quantity) for f in figures) \
                    and self._names_only(quantity, lowered):
                reasons.append(f"wrong_figure: {quantity.symbol} {quantity.name}")
        return reasons

    def supported(self, figure: Figure) -> bool:
        """True when a reference figure written at least as precisely shows the same value.

        ``1.00`` is not supported by the ``01`` of a date: a figure cannot be more precise
        than its source (whole numbers are always compared).
        """
        if math.isnan(figure.value):
            return self.checker.is_grounded(figure)
        return any(_same_unit(figure, ref.text, ref.percent)
                   and (figure.decimals == 0 or figure.decimals <= ref.decimals)
                   and figure_matches(figure, ref.value * ref.scale)
                   for ref in self.checker.figures if not math.isnan(ref.value))

    def _names_only(self, quantity: Quantity, lowered: str) -> bool:
        """True when no other asked quantity with a figure here shares its label."""
        for _, other in self.asked:
            if other is quantity:
                continue
            if any(p.search(lowered) for p in self._labels[id(other)]):
                return False
        return True

    @staticmethod
    def _repeats(text: str, size: int = 6, times: int = 3) -> bool:
        words = _normal(text).split()
        counts: dict[tuple[str, ...], int] = {}
        for i in range(len(words) - size + 1):
            gram = tuple(words[i:i + size])
            counts[gram] = counts.get(gram, 0) + 1
            if counts[gram] >= times:
                return True
        return False

    # -- streaming ---------------------------------------------------------------------------

    def feed(self, piece: str) -> list[str]:
        """Add model text; return the finished sentences accepted (stops at a failure)."""
        if self.stopped:
            return []
        self.pending += piece
        parts = _SENTENCE.split(self.pending)
        if len(parts) < 2:
            if len(self.pending) > MAX_SENTENCE_CHARS:
                self.stopped = True
                self.reasons.append("run_on: no sentence end")
                self.pending = ""
            return []
        self.pending = parts[-1]
        return self._accept(parts[:-1])

    def _accept(self, sentences: Sequence[str]) -> list[str]:
        accepted = []
        for sentence in (s.strip() for s in sentences):
            if not sentence:
                continue
            reasons = self.screen(sentence)
            if reasons:
                self.stopped = True
                self.reasons.extend(reasons)
                self.rejected = sentence
                break
            self.released.append(sentence)
            accepted.append(sentence)
        return accepted

    def finish(self) -> tuple[list[str], GateDecision]:
        """Screen the text left over; return the sentences added and the decision.

        The sentences added are the accepted rest of the model's text and the composed
        statements of every asked quantity or symbol the accepted text lacks.
        """
        added = [] if self.stopped else self._accept([self.pending])
        self.pending = ""
        text = " ".join(self.released)
        missing = self.missing(text)
        fills: list[Statement] = []
        for statement in self.composed.statements:
            if any(statement is owner for owner, _ in missing) and statement not in fills:
                fills.append(statement)
        unnamed = [s for s in self.symbols if not self._names(text, s)]
        for symbol in unnamed:
            fills.extend(s for s in self.composed.statements
                         if s.symbol == symbol and s not in fills)
        if fills:
            as_of = [s for s in self.composed.statements if s.topic == "as_of"]
            fills.extend(s for s in as_of if s not in fills)
        reasons = list(self.reasons)
        reasons.extend(f"missing: {q.symbol} {q.name}" for _, q in missing)
        reasons.extend(f"off_topic: {symbol} not named" for symbol in unnamed)
        if not self.released:
            source = "composed"
            fills = list(self.composed.statements)
            if not reasons:
                reasons.append("empty: the model wrote nothing")
        else:
            source = "model+composed" if fills else "model"
        order = {id(s): i for i, s in enumerate(self.composed.statements)}
        fills.sort(key=lambda s: order.get(id(s), 0))
        fill_text = [s.text for s in fills]
        self.decision = GateDecision(source, reasons, self.rejected, [s.topic for s in fills])
        return [*added, *fill_text], self.decision

    def missing(self, text: str) -> list[tuple[Statement, Quantity]]:
        """Return the asked quantities ``text`` does not state correctly."""
        sentences = split_sentences(text)
        out = []
        for owner, quantity in self.asked:
            labels = self._labels[id(quantity)]
            if not any(any(p.search(s.lower()) for p in labels)
                       and any(_states(f, quantity) for f in extract_figures(s))
                       for s in sentences):
                out.append((owner, quantity))
        return out

    @staticmethod
    def _names(text: str, symbol: str) -> bool:
        if re.search(r"(?<![\w$])\$?" + re.escape(symbol) + r"(?![\w])", text):
            return True
        lowered = text.lower()
        return any(name in lowered for name in COMPANY_NAMES.get(symbol, ()))


def gate_text(text: str, gate: SentenceGate) -> tuple[str, GateDecision]:
    """Screen a whole model answer at once; return the text the user gets and why."""
    accepted = gate.feed(text + " ")
    rest, decision = gate.finish()
    return " ".join([*accepted, *rest]).strip(), decision
