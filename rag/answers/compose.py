"""Compose an answer from the analytics' exact figures: one statement per asked topic.

For each topic the question asks (in its order) and each symbol it names, a builder of
:mod:`rag.answers.technical` or :mod:`rag.answers.options` writes a sentence with the
figures, what they mean in a trader's words, and the :class:`Quantity` records behind
them; a comparison of two symbols adds a sentence naming both figures. A figure the
data lacks is said to be unavailable, never guessed. The answer ends with the time the
figures are as of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rag.answers import options, technical
from rag.answers.facts import Quantity, Statement, SymbolData, Writer, as_of_text
from rag.answers.intents import Ask, resolve_horizon

TOPIC_BUILDERS = {**technical.TOPICS, **options.TOPICS}
# The figure that compares two symbols on a topic.
COMPARED = {"price": "change_percent", "rsi": "rsi_14", "stochastic": "stoch_k",
            "adx": "adx_14", "expected_move": "expected_move_percent", "implied_vol": "atm_iv",
            "realized_vol": "realized_volatility", "put_call": "put_call_volume_ratio",
            "volume": "cumulative_relative_volume", "skew": "skew_25d",
            "gamma": "gamma_exposure"}


@dataclass
class Composed:
    """A composed answer: its text, its statements, and the expiries it used."""

    text: str
    statements: list[Statement]
    expiries: dict[str, str] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)

    def quantities(self) -> list[Quantity]:
        """Return every quantity the answer states, in order."""
        return [q for statement in self.statements for q in statement.quantities]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able facts behind the text (for the response's context)."""
        return {"quantities": [q.to_dict() for q in self.quantities()],
                "expiries": dict(self.expiries), "unavailable": list(self.unavailable)}


def compose(ask: Ask, data: Sequence[SymbolData], *, now: datetime | None = None) -> Composed:
    """Return the composed answer to ``ask`` over each symbol's ``data`` (in ask order).

    Horizons resolve against each symbol's market-data date (UTC), or ``now`` when the
    data has no timestamp.
    """
    writers = []
    for item in data:
        moment = item.as_of() or now or datetime.now(UTC)
        writers.append(Writer(item, resolve_horizon(ask.question, moment.date())))
    statements: list[Statement] = []
    unavailable: list[str] = []
    for topic in ask.topics:
        build = TOPIC_BUILDERS.get(topic)
        if build is None:
            continue
        made = [build(writer) for writer in writers]
        unavailable.extend(f"{s.symbol}:{topic}" for s in made
                           if not s.quantities and s.text.endswith("is not available."))
        statements.extend(made)
        if ask.compare:
            comparison = _comparison(topic, made)
            if comparison is not None:
                statements.append(comparison)
    if data and statements:
        stamps = sorted({as_of_text(item.as_of()) for item in data})
        statements.append(Statement("as_of", "", f"Figures as of {', '.join(stamps)}; "
                                    "indicators are computed on 1-minute bars."))
    expiries = {w.symbol: w.expiry_used for w in writers if w.expiry_used}
    return Composed(text=" ".join(s.text for s in statements), statements=statements,
                    expiries=expiries, unavailable=unavailable)


def _comparison(topic: str, made: Sequence[Statement]) -> Statement | None:
    key = COMPARED.get(topic)
    if key is None or len(made) < 2:
        return None
    picked = []
    for statement in made:
        quantity = next((q for q in statement.quantities if q.name == key), None)
        if quantity is None:
            return None
        picked.append(quantity)
    ordered = sorted(picked, key=lambda q: q.value, reverse=True)
    high, low = ordered[0], ordered[-1]
    if high.value == low.value:
        return Statement(topic, "", f"{high.symbol} and {low.symbol} are level on this measure.")

    def shown(q: Quantity) -> str:
        return f"{q.value:+.2f}%" if q.name == "change_percent" else q.shown

    return Statement(topic, "", f"Of the two, {high.symbol} is higher on this measure "
                     f"({shown(high)} against {low.symbol}'s {shown(low)}).")
