"""The pieces a composed answer is made of: quantities, statements, and their formatting.

A :class:`Quantity` is one figure an answer states: its exact value as the analytics
computed it, the text it is shown as, the words that name it in prose, and where in the
response's structured data it comes from. Formatting here is the only formatting answers
use, so a figure's text and value always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Quantity:
    """One figure of an answer: value, text shown, naming words, structured-data path."""

    symbol: str
    name: str
    value: float
    shown: str
    labels: tuple[str, ...]
    source: str
    percent_of_fraction: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {"symbol": self.symbol, "name": self.name, "value": self.value,
                "shown": self.shown, "source": self.source}


@dataclass
class Statement:
    """One sentence of a composed answer and the quantities it states."""

    topic: str
    symbol: str
    text: str
    quantities: list[Quantity] = field(default_factory=list)


@dataclass
class SymbolData:
    """The structured data of one symbol an answer may use (CONTRACT §5 shapes)."""

    symbol: str
    market: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    analysis: Mapping[str, Any] = field(default_factory=dict)
    patterns: list[Mapping[str, Any]] = field(default_factory=list)

    def as_of(self) -> datetime | None:
        """Return the market data's time (UTC), or None when it has none."""
        raw = self.market.get("timestamp")
        if isinstance(raw, datetime):
            return raw.astimezone(UTC)
        if isinstance(raw, str) and raw:
            try:
                return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                return None
        return None


def number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def money(value: float) -> str:
    """``1234.5`` → ``$1,234.50``; negatives as ``-$1.20``."""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def big_money(value: float) -> str:
    """Dollar amounts in millions or billions (two decimals), smaller ones whole."""
    sign = "-" if value < 0 else "+"
    size = abs(value)
    if size >= 1e9:
        return f"{sign}${size / 1e9:,.2f} billion"
    if size >= 1e6:
        return f"{sign}${size / 1e6:,.2f} million"
    return f"{sign}${size:,.0f}"


def fraction_pct(value: float, decimals: int = 2) -> str:
    """``0.2431`` → ``24.31%``."""
    return f"{value * 100:.{decimals}f}%"


def fixed(value: float, decimals: int = 2) -> str:
    """``1234.5678`` → ``1,234.57``."""
    return f"{value:,.{decimals}f}"


def whole(value: float) -> str:
    """``1234567.0`` → ``1,234,567``."""
    return f"{value:,.0f}"


def signed(text: str, value: float) -> str:
    """Prefix ``+`` to a non-negative figure's text."""
    return text if value < 0 or text.startswith(("+", "-")) else f"+{text}"


def side(value: float, reference: float) -> str:
    """Say where ``value`` stands against ``reference``: ``above``, ``below`` or ``at``."""
    return "above" if value > reference else "below" if value < reference else "at"


def zone(value: float, low: float, high: float) -> str:
    """Place ``value`` against an oscillator's lines: ``above`` (at or over ``high``),
    ``below`` (at or under ``low``) or ``between``."""
    return "above" if value >= high else "below" if value <= low else "between"


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """Return the word for ``count`` of it: ``day`` for 1, ``days`` otherwise."""
    return singular if count == 1 else plural_form or singular + "s"


def long_date(day: str) -> str:
    """``2026-12-04`` → ``Friday 4 December 2026``."""
    try:
        parsed = datetime.strptime(day, "%Y-%m-%d")  # noqa: DTZ007 - a calendar date
    except ValueError:
        return day
    return f"{parsed:%A} {parsed.day} {parsed:%B %Y}"


def as_of_text(moment: datetime | None) -> str:
    """``2026-12-01 15:30 UTC`` (the market data's time)."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "the latest update"


class Writer:
    """Writes one symbol's statements, recording each figure it formats as a Quantity."""

    def __init__(self, data: SymbolData, horizon: Any = None) -> None:
        self.data = data
        self.symbol = data.symbol
        self.horizon = horizon
        self.market: Mapping[str, Any] = data.market
        self.options: Mapping[str, Any] = data.options
        self.analysis: Mapping[str, Any] = data.analysis
        self.indicators: Mapping[str, Any] = data.market.get("indicators") or {}
        self.expiry_used: str | None = None
        self._quantities: list[Quantity] = []

    def q(self, name: str, value: float, shown: str, source: str,
          labels: tuple[str, ...] = (), *, fraction: bool = False) -> str:
        """Record a quantity and return its text."""
        self._quantities.append(Quantity(self.symbol, name, value, shown, labels or (name,),
                                         source, fraction))
        return shown

    def done(self, topic: str, text: str) -> Statement:
        """Return the statement with the quantities recorded since the last one."""
        quantities, self._quantities = self._quantities, []
        return Statement(topic, self.symbol, text, quantities)

    def missing(self, topic: str, what: str) -> Statement:
        """Return a statement that ``what`` is not available (no figure)."""
        self._quantities = []
        return Statement(topic, self.symbol, f"{self.symbol}: {what} is not available.", [])

    def market_q(self, key: str, value: float, shown: str,
                 labels: tuple[str, ...] = ()) -> str:
        """Record a snapshot field's quantity (source ``market.<key>``); return its text."""
        return self.q(key, value, shown, f"market.{key}", labels)

    def indicator_q(self, key: str, value: float, shown: str,
                    labels: tuple[str, ...] = ()) -> str:
        """Record an indicator's quantity (source ``market.indicators.<key>``); return its
        text."""
        return self.q(key, value, shown, f"market.indicators.{key}", labels)

    def number(self, key: str) -> float | None:
        """Return a snapshot field as a finite float."""
        return number(self.market.get(key))

    def indicator(self, key: str) -> float | None:
        """Return an indicator value as a finite float."""
        return number(self.indicators.get(key))
