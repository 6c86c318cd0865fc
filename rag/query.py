"""Find the symbols and the intent of a chat message.

Symbols come from ``$AAPL`` cashtags, bare upper-case tickers that the service tracks,
company names of those tickers, and the request's ``context`` (``symbol``/``symbols``);
when the message names none, the previous turn's symbols carry over so follow-up
questions ("and its RSI?") keep their subject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Intent = Literal["options", "technical", "fundamental", "news", "general"]

COMPANY_NAMES: dict[str, tuple[str, ...]] = {
    "AAPL": ("apple",),
    "MSFT": ("microsoft",),
    "NVDA": ("nvidia",),
    "TSLA": ("tesla",),
    "SPY": ("s&p 500", "s&p500", "sp500", "spdr"),
    "QQQ": ("nasdaq 100", "nasdaq-100", "nasdaq"),
    "AMZN": ("amazon",),
    "META": ("meta platforms", "facebook"),
    "GOOGL": ("alphabet", "google"),
    "GOOG": ("alphabet", "google"),
    "AMD": ("advanced micro devices",),
    "NFLX": ("netflix",),
    "INTC": ("intel",),
    "JPM": ("jpmorgan", "jp morgan"),
}

_INTENT_WORDS: dict[Intent, tuple[str, ...]] = {
    "options": (
        "option", "call", "calls", "put", "puts", "strike", "expiry", "expiration",
        "implied vol", "iv", "greek", "delta", "gamma", "theta", "vega", "open interest",
        "max pain", "skew", "straddle", "chain",
    ),
    "technical": (
        "rsi", "macd", "sma", "ema", "moving average", "bollinger", "atr", "vwap",
        "support", "resistance", "trend", "momentum", "overbought", "oversold",
        "technical", "indicator", "pattern", "breakout", "volume",
    ),
    "fundamental": (
        "revenue", "earnings", "eps", "margin", "guidance", "profit", "income",
        "cash flow", "balance sheet", "debt", "dividend", "valuation", "10-k", "10-q",
        "annual report", "segment", "fundamental", "sales",
    ),
    "news": ("news", "announce", "announced", "headline", "today", "latest", "report"),
}
_INTENT_ORDER: tuple[Intent, ...] = ("options", "technical", "fundamental", "news")

_CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z0-9.\-]{0,9})\b")
_TICKER = re.compile(r"(?<![\w$])([A-Z][A-Z0-9]{0,4}(?:[.\-][A-Z])?)(?![\w])")


@dataclass(frozen=True)
class QueryPlan:
    """What to fetch for one message: symbols, intent, retrieval query and filters."""

    symbols: tuple[str, ...]
    intent: Intent
    search_query: str
    filters: dict[str, Any] = field(default_factory=dict)


def _word_pattern(word: str, plural: bool = False) -> re.Pattern[str]:
    suffix = r"(?:s|es)?" if plural else ""
    return re.compile(r"(?<![\w&])" + re.escape(word) + suffix + r"(?![\w&])", re.IGNORECASE)


def extract_symbols(
    text: str, symbols: Iterable[str], context: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """Return tracked symbols named in ``text`` or ``context``, in order of appearance."""
    tracked = tuple(symbols)
    found: list[tuple[int, str]] = []
    for match in _CASHTAG.finditer(text):
        symbol = match.group(1).upper()
        if symbol in tracked:
            found.append((match.start(), symbol))
    for match in _TICKER.finditer(text):
        if match.group(1) in tracked:
            found.append((match.start(), match.group(1)))
    for symbol in tracked:
        for name in COMPANY_NAMES.get(symbol, ()):
            hit = _word_pattern(name).search(text)
            if hit:
                found.append((hit.start(), symbol))
    named = list(dict.fromkeys(symbol for _, symbol in sorted(found)))
    for symbol in _context_symbols(context):
        if symbol in tracked and symbol not in named:
            named.append(symbol)
    return tuple(named)


def _context_symbols(context: Mapping[str, Any] | None) -> list[str]:
    if not context:
        return []
    raw: list[Any] = []
    if isinstance(context.get("symbol"), str):
        raw.append(context["symbol"])
    if isinstance(context.get("symbols"), Sequence) and not isinstance(context["symbols"], str):
        raw.extend(context["symbols"])
    return [str(item).strip().upper().lstrip("$") for item in raw if str(item).strip()]


def classify_intent(text: str) -> Intent:
    """Return the message's intent; the first of options/technical/fundamental/news to match."""
    lowered = text.lower()
    scores: dict[Intent, int] = {}
    for intent in _INTENT_ORDER:
        scores[intent] = sum(
            1 for word in _INTENT_WORDS[intent] if _word_pattern(word, plural=True).search(lowered)
        )
    best = max(_INTENT_ORDER, key=lambda intent: scores[intent])
    return best if scores[best] > 0 else "general"


def plan_query(
    message: str,
    symbols: Iterable[str],
    context: Mapping[str, Any] | None = None,
    previous_symbols: Sequence[str] = (),
) -> QueryPlan:
    """Return the plan for ``message``; falls back to ``previous_symbols`` for follow-ups."""
    tracked = tuple(symbols)
    named = extract_symbols(message, tracked, context)
    if not named:
        named = tuple(s for s in previous_symbols if s in tracked)
    intent = classify_intent(message)
    if isinstance(context, Mapping) and context.get("intent") in (*_INTENT_ORDER, "general"):
        intent = context["intent"]
    search_query = message.strip()
    if named and not any(symbol in message.upper() for symbol in named):
        search_query = f"{' '.join(named)} {search_query}"
    filters: dict[str, Any] = {"ticker": named[0]} if len(named) == 1 else {}
    return QueryPlan(symbols=named, intent=intent, search_query=search_query, filters=filters)
