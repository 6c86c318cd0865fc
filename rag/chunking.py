"""Split cleaned pages into token-bounded chunks with overlap; a chunk never spans pages.

Token counts come from the embedder's own tokenizer (``count_tokens``) so a chunk plus
its context header fits MiniLM's 256 word-piece window instead of being cut silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TokenCounter = Callable[[Sequence[str]], list[int]]

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 32
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[A-Z0-9(\"'$])")


def approximate_token_count(texts: Sequence[str]) -> list[int]:
    """Estimate word-pieces without a tokenizer (about 1.4 per word for filings)."""
    return [math.ceil(len(t.split()) * 1.4) for t in texts]


@dataclass(slots=True)
class Chunk:
    """A passage of one page: ``page`` is 1-based, ``ordinal`` counts chunks in the document."""

    text: str
    page: int
    ordinal: int
    token_count: int


def _units(page_text: str, count: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """Return (text, tokens) pieces of at most ``max_tokens``: lines, sentences or words."""
    lines = [line for line in page_text.split("\n") if line.strip()]
    counts = count(lines) if lines else []
    units: list[tuple[str, int]] = []
    for line, n in zip(lines, counts, strict=True):
        if n <= max_tokens:
            units.append((line, n))
            continue
        sentences = _SENTENCE_END.split(line)
        for sentence, m in zip(sentences, count(sentences), strict=True):
            if m <= max_tokens:
                units.append((sentence, m))
                continue
            words = sentence.split()
            step = max(1, int(len(words) * max_tokens / m * 0.9))
            pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
            units.extend(zip(pieces, count(pieces), strict=True))
    return units


def chunk_page(
    page_text: str,
    page: int,
    count: TokenCounter = approximate_token_count,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    first_ordinal: int = 0,
) -> list[Chunk]:
    """Return the page's chunks of at most ``max_tokens`` with ``overlap_tokens`` carried over."""
    if overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be smaller than max_tokens")
    units = _units(page_text, count, max_tokens)
    chunks: list[Chunk] = []
    current: list[tuple[str, int]] = []
    size = 0
    fresh = 0  # units in ``current`` not already emitted in the previous chunk

    def emit() -> None:
        text = "\n".join(u for u, _ in current)
        chunks.append(Chunk(text, page, first_ordinal + len(chunks), size))

    for unit in units:
        if current and size + unit[1] > max_tokens:
            emit()
            carried: list[tuple[str, int]] = []
            carried_size = 0
            for prior in reversed(current):
                if carried_size + prior[1] > overlap_tokens:
                    break
                carried.insert(0, prior)
                carried_size += prior[1]
            current, size, fresh = carried, carried_size, 0
            if size + unit[1] > max_tokens:
                current, size = [], 0
        current.append(unit)
        size += unit[1]
        fresh += 1
    if current and fresh:
        emit()
    return chunks


def chunk_pages(
    pages: Sequence[str],
    count: TokenCounter = approximate_token_count,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Return chunks for every page in order; ``pages[0]`` is page 1."""
    chunks: list[Chunk] = []
    for number, text in enumerate(pages, start=1):
        chunks.extend(
            chunk_page(text, number, count, max_tokens=max_tokens,
                       overlap_tokens=overlap_tokens, first_ordinal=len(chunks))
        )
    return chunks
