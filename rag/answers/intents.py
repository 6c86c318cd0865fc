"""What a question asks: its symbols, the quantities (topics) it wants, and its horizon.

A question may ask several things at once ("Is AAPL overbought, and what move do options
imply by Friday?"): :func:`recognise` returns every topic it names, in the order they
appear, so the composer answers each part. Horizons ("by Friday", "next week", "in 10
days", "Dec 18") resolve against the market data's date (UTC), and
:func:`pick_expiry` maps them to a listed expiry.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from rag.query import extract_symbols

# Topic → patterns that ask for it. Order in the question decides the answer's order.
TOPIC_PATTERNS: dict[str, tuple[str, ...]] = {
    "price": (r"\bprice\b", r"trading at", r"\bquote\b", r"how much is", r"\bday move\b",
              r"\bup or down\b", r"\bmoved? today\b", r"\bchange today\b", r"\btoday\b",
              r"\bdoing\b", r"\bperform", r"\bgain(?:ed|ing)?\b", r"\bdown today\b"),
    "rsi": (r"\brsi\b", r"overbought", r"oversold", r"relative strength"),
    "stochastic": (r"stochastic", r"\bstoch\b", r"%k\b"),
    "macd": (r"\bmacd\b",),
    "moving_average": (r"moving averages?", r"\bsma\b", r"\bema\b", r"\bmas?\b(?!x)"),
    "adx": (r"\badx\b", r"trend strength", r"strength of (?:the|its) trend",
            r"directional"),
    "bollinger": (r"bollinger", r"\bbands?\b"),
    "vwap": (r"\bvwap\b",),
    "atr": (r"\batr\b", r"average true range"),
    "expected_move": (r"expected move", r"implied move", r"\bmove\b.{0,40}\bimpl",
                      r"\bimpl\w*\b.{0,30}\bmove\b", r"priced in", r"straddle",
                      r"how (?:far|much) (?:could|can|might|will) .{0,30}move"),
    "implied_vol": (r"implied vol", r"\biv\b", r"\bvolatility\b", r"\bvol\b"),
    "realized_vol": (r"reali[sz]ed", r"historical vol"),
    "put_call": (r"put\s*/\s*call", r"put-call", r"\bput call\b",
                 r"calls? (?:vs\.?|versus|or|and) puts?",
                 r"puts? (?:vs\.?|versus|or|and) calls?", r"\bpcr\b", r"more (?:puts|calls)",
                 r"(?<!change in )open interest(?! change)", r"\boi\b(?! change)",
                 r"(?:call|put|option)s? volume"),
    "oi_change": (r"open[- ]interest change", r"change in open interest", r"\boi change",
                  r"new positions", r"open interest (?:rose|fell|grew|changed)"),
    "max_pain": (r"max(?:imum)?[- ]pain", r"\bpin(?:ned|ning)?\b"),
    "gamma": (r"\bgamma\b", r"\bgex\b"),
    "delta_exposure": (r"delta exposure", r"\bdex\b", r"dealer delta"),
    "unusual": (r"unusual", r"\bsweeps?\b", r"\bblock trades?\b"),
    "skew": (r"\bskew",),
    "term_structure": (r"term structure", r"contango", r"backwardation", r"iv curve",
                       r"across expir", r"by expir"),
    "levels": (r"support", r"resistance", r"(?<!usual )(?<!normal )\blevels?\b"),
    "patterns": (r"pattern", r"candle", r"\bdoji\b", r"engulfing", r"hammer",
                 r"shooting star", r"breakout", r"crossover"),
    "volume": (r"(?<!call )(?<!put )(?<!options )(?<!option )\bvolume\b(?! ratio)",
               r"usual level", r"\brvol\b", r"heav(?:y|ier) trading", r"busier than"),
    "documents": (r"revenue", r"\bsales\b", r"margin", r"earnings", r"\beps\b", r"guidance",
                  r"10-k", r"10-q", r"filing", r"annual report", r"dividend", r"\bdebt\b",
                  r"cash flow", r"net income", r"segment", r"according to", r"document",
                  r"primer", r"what (?:is|are|does) (?:a|an|the)\b.{0,40}\bmean",
                  r"\bdefin", r"\bexplain\b"),
}
# Words that stand for several topics.
GROUP_PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "momentum": ((r"momentum",), ("rsi", "macd", "stochastic")),
    "trend": ((r"\btrend(?:ing)?\b(?! strength)", r"bullish", r"bearish", r"technical"),
              ("moving_average", "macd", "adx")),
    "options": ((r"\boptions? (?:say|market|positioning|flow|picture|tell)",
                 r"\bwhat do .{0,20}options\b", r"\boptions\b.{0,15}\bsay\b",
                 r"\bpositioning\b"),
                ("put_call", "expected_move", "max_pain")),
    "volatility": ((r"\bhow volatile\b",), ("implied_vol", "realized_vol")),
}
OVERVIEW = ("price", "rsi", "macd", "put_call", "expected_move")
OPTION_TOPICS = frozenset({"expected_move", "implied_vol", "put_call", "oi_change", "max_pain",
                           "gamma", "delta_exposure", "unusual", "skew", "term_structure"})
BAR_TOPICS = frozenset({"levels", "patterns", "volume", "realized_vol"})

_COMPILED = {topic: [re.compile(p, re.IGNORECASE) for p in patterns]
             for topic, patterns in TOPIC_PATTERNS.items()}
_GROUPS = {name: ([re.compile(p, re.IGNORECASE) for p in patterns], topics)
           for name, (patterns, topics) in GROUP_PATTERNS.items()}
_OPTIONS_WORD = re.compile(r"\boptions?\b", re.IGNORECASE)
_COMPARE = re.compile(r"\b(?:compare|comparison|versus|vs\.?|against|than|or)\b", re.IGNORECASE)
# Lower-case tickers that are also English words are not read as tickers.
_WORD_TICKERS = frozenset({"meta", "all", "it", "on", "key", "now", "low", "big", "cat", "dis",
                           "am", "an", "are", "be", "can", "go", "has", "for", "so", "see"})
_WEEKDAYS = {name: i for i, name in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})


@dataclass(frozen=True)
class Horizon:
    """A date the question asks about, and the words that asked for it."""

    target: date
    phrase: str


@dataclass(frozen=True)
class Ask:
    """What one question asks: symbols, topics in question order, and the horizon."""

    question: str
    symbols: tuple[str, ...]
    topics: tuple[str, ...]
    horizon_phrase: str | None = None
    compare: bool = False
    overview: bool = False
    named: tuple[str, ...] = field(default_factory=tuple)  # in the question's own text

    def needs_options(self) -> bool:
        """Return True when an answer needs the option-chain summary."""
        return bool(OPTION_TOPICS.intersection(self.topics))

    def needs_bars(self) -> bool:
        """Return True when an answer needs the bar analysis (levels, patterns, volume)."""
        return bool(BAR_TOPICS.intersection(self.topics))


def find_symbols(text: str, tracked: Iterable[str],
                 context: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Return the tracked symbols named in ``text`` (tickers in any case, names, context)."""
    tracked = tuple(tracked)
    named = list(extract_symbols(text, tracked, context))
    hits: list[tuple[int, str]] = []
    for symbol in tracked:
        if symbol in named or symbol.lower() in _WORD_TICKERS:
            continue
        match = re.search(r"(?<![\w$])" + re.escape(symbol.lower()) + r"(?![\w])", text)
        if match:
            hits.append((match.start(), symbol))
    return tuple(dict.fromkeys([*named, *(s for _, s in sorted(hits))]))


def find_topics(text: str) -> tuple[tuple[str, ...], bool]:
    """Return the topics ``text`` asks about in order of appearance, and whether none did."""
    found: list[tuple[int, int, str]] = []
    for topic, patterns in _COMPILED.items():
        starts = [m.start() for p in patterns for m in [p.search(text)] if m]
        if starts:
            found.append((min(starts), 0, topic))
    specific_options = any(topic in OPTION_TOPICS for _, _, topic in found)
    for name, (patterns, members) in _GROUPS.items():
        starts = [m.start() for p in patterns for m in [p.search(text)] if m]
        if name == "options" and not starts and not specific_options:
            starts = [m.start() for m in [_OPTIONS_WORD.search(text)] if m]
        if starts:
            found.extend((min(starts), rank + 1, topic) for rank, topic in enumerate(members))
    topics: list[str] = list(dict.fromkeys(topic for _, _, topic in sorted(found)))
    if "oi_change" in topics and "put_call" in topics and not re.search(
            r"put\s*/\s*call|put-call|calls? (?:vs|versus)|ratio", text, re.IGNORECASE):
        topics.remove("put_call")
    if "expected_move" in topics and "implied_vol" in topics and not re.search(
            r"implied vol|\biv\b", text, re.IGNORECASE):
        topics.remove("implied_vol")
    # "today" alone asks for the day's move; with another topic it is only a time.
    if len(topics) > 1 and "price" in topics and not re.search(
            r"\bprice\b|trading at|quote|how much is|day move|up or down|doing|perform",
            text, re.IGNORECASE):
        topics.remove("price")
    if not topics:
        return OVERVIEW, True
    return tuple(topics), False


def recognise(question: str, tracked: Sequence[str],
              context: Mapping[str, Any] | None = None,
              previous_symbols: Sequence[str] = ()) -> Ask:
    """Return what ``question`` asks; symbols fall back to ``previous_symbols``."""
    in_text = find_symbols(question, tracked)
    named = find_symbols(question, tracked, context)
    symbols = named or tuple(s for s in previous_symbols if s in tracked)
    topics, overview = find_topics(question)
    compare = len(symbols) > 1 and bool(_COMPARE.search(question) or len(in_text) > 1)
    return Ask(question=question, symbols=symbols, topics=topics,
               horizon_phrase=_horizon_phrase(question), compare=compare, overview=overview,
               named=in_text)


_HORIZON = re.compile(
    r"\b(?:by|before|through|until|till|into|for|this|next|on)?\s*"
    r"(?P<phrase>next week|this week|end of (?:the )?week|tomorrow|next month|this month|"
    r"end of (?:the )?month|monthly|end of (?:the )?year|year[- ]end|"
    r"(?:in|over the next|within)\s+(?P<n>\d{1,3})\s+(?P<unit>days?|weeks?|months?)|"
    r"(?P<n2>\d{1,3})[- ](?P<unit2>day|week|month)|"
    r"(?P<weekday>monday|tuesday|wednesday|thursday|friday)|"
    r"(?P<iso>\d{4}-\d{2}-\d{2})|"
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?\s+(?P<day>\d{1,2})\b)",
    re.IGNORECASE)


def _horizon_phrase(question: str) -> str | None:
    match = _HORIZON.search(question)
    return match.group(0).strip() if match else None


def resolve_horizon(question: str, today: date) -> Horizon | None:
    """Return the date the question's horizon names, counted from ``today`` (UTC)."""
    match = _HORIZON.search(question)
    if match is None:
        return None
    phrase = match.group("phrase").lower()
    words = match.group(0).strip()
    target: date | None = None
    if phrase == "tomorrow":
        target = today + timedelta(days=1)
    elif phrase in {"this week", "end of week", "end of the week"}:
        target = today + timedelta(days=(4 - today.weekday()) % 7)
    elif phrase == "next week":
        target = today + timedelta(days=7 - today.weekday() + 4)
    elif phrase in {"this month", "end of month", "end of the month"}:
        target = third_friday(today.year, today.month)
        if target < today:
            target = date(today.year, today.month, calendar.monthrange(today.year,
                                                                        today.month)[1])
    elif phrase in {"next month", "monthly"}:
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        target = third_friday(year, month) if phrase == "next month" else third_friday(
            today.year, today.month)
        if target < today:
            target = third_friday(year, month)
    elif phrase in {"end of the year", "end of year", "year-end", "year end"}:
        target = date(today.year, 12, 31)
    elif match.group("n") or match.group("n2"):
        count = int(match.group("n") or match.group("n2"))
        unit = (match.group("unit") or match.group("unit2")).lower()
        days = count * (7 if unit.startswith("week") else 30 if unit.startswith("month") else 1)
        target = today + timedelta(days=days)
    elif match.group("weekday"):
        weekday = _WEEKDAYS[match.group("weekday").lower()]
        target = today + timedelta(days=(weekday - today.weekday()) % 7)
        if words.lower().startswith("next"):
            target += timedelta(days=7)
    elif match.group("iso"):
        target = date.fromisoformat(match.group("iso"))
    elif match.group("month"):
        month = _MONTHS[match.group("month").lower()[:3]]
        day = min(int(match.group("day")), calendar.monthrange(today.year, month)[1])
        target = date(today.year, month, day)
        if target < today:
            target = date(today.year + 1, month, day)
    return Horizon(target=target, phrase=words) if target is not None else None


def third_friday(year: int, month: int) -> date:
    """Return the third Friday of a month (the standard monthly option expiry)."""
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def pick_expiry(expiries: Sequence[Mapping[str, Any]], horizon: Horizon | None,
                *, need: str | None = None) -> Mapping[str, Any] | None:
    """Return the listed expiry that covers ``horizon`` (the first on or after its date).

    ``expiries`` are chain-summary term-structure rows (``expiration``,
    ``days_to_expiry``); rows less than a day out are skipped. Without a horizon the
    nearest expiry is returned. With ``need`` (a row key such as ``atm_iv``) rows where it
    is None are skipped; past the last listed expiry the last one is returned.
    """
    rows = sorted((row for row in expiries if (row.get("days_to_expiry") or 0) >= 1),
                  key=lambda row: str(row.get("expiration")))
    if need is not None:
        rows = [row for row in rows if row.get(need) is not None] or []
    if not rows:
        return None
    if horizon is None:
        return rows[0]
    target = horizon.target.isoformat()
    later = [row for row in rows if str(row.get("expiration")) >= target]
    return later[0] if later else rows[-1]
