"""Extractive answers to document questions: the sentences or table rows that answer, quoted.

Each retrieved passage is split into sentences and, where the text keeps its line
breaks, lines (a filing's table rows); each is scored by the distinct question terms it
shares (BM25's tokenizer: numbers, periods and plurals folded), with a bonus for a
figure when the question asks for an amount. The best are quoted exactly as printed,
with the document's title and page and the passage's number for citation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.prompt import sanitize_document_text

MAX_QUOTE_CHARS = 320
# iPhone, eBay: a sentence may start in lower case.
_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=[\"'(\[]?[A-Za-z0-9$])|\n+")
_FIGURE = re.compile(r"\d")
_AMOUNT_WORDS = re.compile(
    r"\b(?:how much|how many|what (?:was|were|is|are) the|amount|total|revenue|sales|margin|"
    r"income|eps|ratio|percent|percentage|growth|cash|debt|expense|cost|capex|dividend)\b",
    re.IGNORECASE)
_STOP = frozenset({"the", "a", "an", "of", "in", "on", "for", "and", "or", "to", "what", "was",
                   "is", "are", "were", "how", "did", "does", "do", "its", "it", "by", "as",
                   "at", "from", "with", "this", "that", "be", "which"})


@dataclass
class Quote:
    """One quoted piece of a passage."""

    n: int
    title: str
    page: int
    text: str
    score: float


@dataclass
class DocumentAnswer:
    """The quotes that answer a document question, and the passages they cite."""

    quotes: list[Quote] = field(default_factory=list)

    @property
    def cited(self) -> list[int]:
        """Passage numbers cited, in order."""
        return list(dict.fromkeys(q.n for q in self.quotes))

    def text(self) -> str:
        """Return the quotes as prose with page citations (empty when none answer)."""
        parts = [f'{q.title}, page {q.page}: "{q.text}" [{q.n}]' for q in self.quotes]
        return ("From the documents: " + " ".join(parts)) if parts else ""


def _stem(term: str) -> str:
    """Fold the commonest inflections ("increased", "increase" → "increas")."""
    for suffix in ("ing", "ed", "es", "s"):
        if term.endswith(suffix) and len(term) - len(suffix) >= 4:
            term = term[:-len(suffix)]
            break
    return term[:-1] if term.endswith("e") and len(term) > 4 else term


def _terms(text: str) -> set[str]:
    from rag.lexical import tokenize  # noqa: PLC0415 - keeps this module light to import

    return {_stem(t) for t in tokenize(text) if t not in _STOP}


def _pieces(text: str, amount: bool = False) -> list[str]:
    """Sentences and lines; with ``amount``, a line without a figure takes the next lines
    up to the first with one (pypdf puts a table row's label and its figures on separate
    lines)."""
    cleaned = [" ".join(part.split()) for part in _SPLIT.split(text)]
    cleaned = [part for part in cleaned if part]
    pieces = []
    for i, part in enumerate(cleaned):
        if amount and not _FIGURE.search(part):
            for follow in cleaned[i + 1:i + 3]:
                part = f"{part} {follow}"
                if _FIGURE.search(follow):
                    break
        pieces.append(part)
    return [piece for piece in pieces if len(piece) >= 12]


def extract_answer(question: str, sources: Sequence[Mapping[str, Any]],
                   max_quotes: int = 2) -> DocumentAnswer:
    """Return up to ``max_quotes`` pieces of ``sources`` (Source dicts) that answer ``question``.

    ``sources`` are numbered from 1 in order (as the response's ``sources``). A piece
    needs at least two question terms (one when the question has fewer than three), or
    nothing is quoted.
    """
    wanted = _terms(question)
    if not wanted:
        return DocumentAnswer()
    amount = bool(_AMOUNT_WORDS.search(question))
    needed = 1 if len(wanted) < 3 else 2
    candidates: list[Quote] = []
    for n, source in enumerate(sources, start=1):
        title = sanitize_document_text(str(source.get("title", "")), 120)
        page = int(source.get("page", 1) or 1)
        rank_bonus = 0.1 / n  # the retriever's order breaks ties
        for piece in _pieces(str(source.get("text", "")), amount):
            shared = len(wanted & _terms(piece))
            if shared < needed:
                continue
            score = shared + (0.5 if amount and _FIGURE.search(piece) else 0.0) + rank_bonus
            shown = sanitize_document_text(piece, MAX_QUOTE_CHARS)
            candidates.append(Quote(n, title, page, shown, score))
    candidates.sort(key=lambda q: (-q.score, len(q.text)))  # ties: the tighter quote
    chosen: list[Quote] = []
    for quote in candidates:
        if any(quote.text == c.text for c in chosen):
            continue
        chosen.append(quote)
        if len(chosen) >= max_quotes:
            break
    return DocumentAnswer(chosen)
