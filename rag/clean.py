"""Clean extracted page text: headers, footers, page numbers, hyphenation, tables, spacing.

Works on a whole document at once because running headers and footers are found by
repetition across pages. Each page stays a separate string, so page numbers survive.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

EDGE_LINES = 3
REPEAT_SHARE = 0.4

_TRANSLATE = str.maketrans(
    {
        "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
        "\u00ad": "", "\ufeff": "",
        "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
        "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2022": "*", "\uf0b7": "*",
        "\t": " ",
    }
)
_PAGE_NUMBER = re.compile(
    r"^(?:page\s*)?[-(]?\s*(?:\d{1,4}|[ivxlc]{1,6})\s*[-)]?(?:\s*(?:of|/)\s*\d{1,4})?$",
    re.IGNORECASE,
)
# A table cell that pypdf put on its own line: an amount, a percentage, a currency sign.
_CELL = re.compile(r"^(?:[$€£%()*-]|\(?-?[$€£]?\s*\d[\d,]*(?:\.\d+)?\s*%?\)?%?,?)$")
# Not after another hyphen: "year-to-\ndate" is a compound, not a broken word.
_HYPHEN_BREAK = re.compile(r"(?<![-\w])([A-Za-z]{2,})-\n[ ]*([a-z]{2,})")
_SPACES = re.compile(r"[ ]{2,}")


def normalize_characters(text: str) -> str:
    """Return ``text`` with ligatures, odd spaces, quotes and dashes made plain (NFKC)."""
    return unicodedata.normalize("NFKC", text).translate(_TRANSLATE)


def join_hyphenation(text: str) -> str:
    """Join words hyphenated across a line break (``finan-\\ncial`` -> ``financial``)."""
    return _HYPHEN_BREAK.sub(r"\1\2", text)


def _line_key(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower()).strip()


def _edge_indexes(lines: list[str]) -> list[int]:
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return filled[:EDGE_LINES] + [i for i in filled[-EDGE_LINES:] if i not in filled[:EDGE_LINES]]


def find_repeated_edges(pages: list[list[str]]) -> set[str]:
    """Return line keys that appear at the top or bottom of many pages (running heads)."""
    if len(pages) < 2:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_line_key(lines[i]) for i in _edge_indexes(lines)})
    threshold = max(2, math.ceil(REPEAT_SHARE * len(pages)))
    return {key for key, count in counts.items() if count >= threshold and key}


def merge_table_cells(lines: list[str]) -> list[str]:
    """Put table cells that sit alone on a line back on their row's line, in reading order."""
    merged: list[str] = []
    for line in lines:
        if merged and _CELL.match(line):
            merged[-1] = f"{merged[-1]} {line}"
        else:
            merged.append(line)
    return merged


def clean_page(raw: str, repeated: set[str] | None = None) -> str:
    """Return one page's text cleaned; ``repeated`` holds running-head keys to drop."""
    text = join_hyphenation(normalize_characters(raw))
    lines = [_SPACES.sub(" ", line.strip()) for line in text.split("\n")]
    edges = set(_edge_indexes(lines))
    kept = []
    for i, line in enumerate(lines):
        if not line:
            continue
        if i in edges and (_PAGE_NUMBER.match(line) or _line_key(line) in (repeated or ())):
            continue
        kept.append(line)
    return "\n".join(merge_table_cells(kept))


def clean_pages(raw_pages: list[str]) -> list[str]:
    """Return every page cleaned; headers and footers repeated across pages are removed."""
    prepared = [
        [_SPACES.sub(" ", line.strip()) for line in text.split("\n")]
        for text in (join_hyphenation(normalize_characters(p)) for p in raw_pages)
    ]
    repeated = find_repeated_edges(prepared)
    return [clean_page(raw, repeated) for raw in raw_pages]
