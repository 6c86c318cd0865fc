"""Check that the numbers in an answer come from the market snapshot or the passages.

A figure in the answer is *grounded* when some number in the reference text equals it
at the precision the answer shows it: ``189.2`` matches ``189.23``; ``1,234.5`` matches
``1234.50``; ``12.5%`` matches ``0.125`` and ``12.50``; ``1.2M`` matches ``1,234,567``.
Signs are compared loosely (prose says "fell 1.2%" for ``-1.2``). Citation markers such
as ``[2]`` are not figures. Ungrounded figures are flagged ``(unverified)`` or removed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["flag", "strip", "report"]

_SCALES = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "million": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9, "t": 1e12, "tn": 1e12, "trillion": 1e12,
}
_NUMBER = re.compile(
    r"(?<![\w.\[])(?P<sign>-(?=[\d$]))?\$?"
    r"(?P<digits>\d+(?:\.\d+){2,}|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?![\w]*\])"  # not a citation marker like [12]
    r"(?P<percent>\s?%|\s?percent\b)?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|bn|mn|mm|tn|[kKmMbBtT])(?![A-Za-z]))?"
)
_CITATION = re.compile(r"\[\d{1,3}\]")


@dataclass(frozen=True)
class Figure:
    """One number as written: its value, shown decimals, and whether it is a percentage."""

    text: str
    start: int
    end: int
    value: float
    decimals: int
    percent: bool
    scale: float = 1.0


@dataclass
class GroundingReport:
    """The checked text and how many of its figures were found in the references."""

    text: str
    total: int
    grounded: int
    ungrounded: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Share of figures found in the references (1.0 when the answer has none)."""
        return 1.0 if self.total == 0 else self.grounded / self.total

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-able summary."""
        return {"ratio": round(self.ratio, 4), "figures": self.total,
                "grounded": self.grounded, "ungrounded": list(self.ungrounded)}


def extract_figures(text: str) -> list[Figure]:
    """Return the numbers written in ``text`` (not citation markers), in order."""
    masked = _CITATION.sub(lambda m: " " * len(m.group(0)), text)
    figures: list[Figure] = []
    for match in _NUMBER.finditer(masked):
        digits = match.group("digits")
        if digits.count(".") > 1:  # a dotted date or version ("10.10.2024"): one token, no value
            figures.append(Figure(text=digits, start=match.start("digits"),
                                  end=match.end("digits"), value=math.nan, decimals=0,
                                  percent=False))
            continue
        decimals = len(digits.split(".", 1)[1]) if "." in digits else 0
        value = float(digits.replace(",", ""))
        if match.group("sign"):
            value = -value
        scale_word = (match.group("scale") or "").lower()
        scale = _SCALES.get(scale_word, 1.0)
        end = match.end() if scale_word or match.group("percent") else match.end("digits")
        figures.append(Figure(
            text=text[match.start():end], start=match.start(), end=end, value=value,
            decimals=decimals, percent=bool(match.group("percent")), scale=scale,
        ))
    return figures


def _matches(figure: Figure, reference: float) -> bool:
    tolerance = 0.5 * 10.0 ** (-figure.decimals) * figure.scale * (1 + 1e-9)
    shown = abs(figure.value) * figure.scale
    candidates = [abs(reference)]
    if figure.percent:
        candidates.append(abs(reference) * 100.0)
    else:
        candidates.append(abs(reference) / 100.0)
    return any(abs(candidate - shown) <= tolerance + 1e-12 for candidate in candidates)


class GroundingChecker:
    """Holds the reference numbers of one answer's evidence."""

    def __init__(self, reference_text: str) -> None:
        figures = extract_figures(reference_text)
        self._references = [f.value * f.scale for f in figures if not math.isnan(f.value)]
        self._exact = {round(abs(v), 6) for v in self._references}
        self._tokens = {f.text for f in figures if math.isnan(f.value)}

    def is_grounded(self, figure: Figure) -> bool:
        """Return True when the reference text holds this figure at its shown precision.

        A dotted token such as ``10.10.2024`` is grounded only if the references hold it.
        """
        if math.isnan(figure.value):
            return figure.text in self._tokens
        if round(abs(figure.value * figure.scale), 6) in self._exact:
            return True
        return any(_matches(figure, reference) for reference in self._references)

    def check(self, answer: str, mode: Mode = "flag") -> GroundingReport:
        """Return the answer with ungrounded figures flagged/removed, and the counts."""
        figures = extract_figures(answer)
        bad = [figure for figure in figures if not self.is_grounded(figure)]
        text = answer
        if mode != "report":
            for figure in reversed(bad):
                replacement = (
                    f"{figure.text} (unverified)" if mode == "flag" else "[figure removed]"
                )
                text = text[: figure.start] + replacement + text[figure.end:]
        return GroundingReport(
            text=text, total=len(figures), grounded=len(figures) - len(bad),
            ungrounded=[figure.text for figure in bad],
        )


def check_answer(answer: str, reference_text: str, mode: Mode = "flag") -> GroundingReport:
    """Check ``answer`` against ``reference_text`` (see :class:`GroundingChecker`)."""
    return GroundingChecker(reference_text).check(answer, mode)


def resolve_citations(answer: str, passage_count: int) -> tuple[str, list[int]]:
    """Return the answer without citations of passages that do not exist, and those cited.

    Markers like ``[3]`` are kept when ``1 <= n <= passage_count`` (sources are returned
    in the same numbering) and removed otherwise.
    """
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        number = int(match.group(0)[1:-1])
        if 1 <= number <= passage_count:
            if number not in cited:
                cited.append(number)
            return match.group(0)
        return ""

    text = _CITATION.sub(keep, answer)
    return re.sub(r"[ ]{2,}", " ", text).strip(), cited
