"""Check that the numbers in an answer come from the market snapshot or the passages.

A figure in the answer is *grounded* when some number in the reference text equals it
at the precision the answer shows it: ``189.2`` matches ``189.23``; ``1,234.5`` matches
``1234.50``; ``12.5%`` matches ``0.125`` and ``12.50``; ``1.2M`` matches ``1,234,567``.
Signs are compared loosely (prose says "fell 1.2%" for ``-1.2``). Citation markers such
as ``[2]`` are not figures. Ungrounded figures are flagged ``(unverified)`` or removed.

:class:`FigureGuard` applies the same test while a local model writes: a greedy decoder
takes the best next piece that keeps every figure grounded or on its way to a reference
figure, so the post-check rarely has anything left to remove.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
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
_NOT_DIGITS = re.compile(r"[^\d.]")
# A figure being written whose last thousands group is not complete yet ("1,23").
_OPEN_GROUP = re.compile(r"(?<![\w.,])\$?\d{1,3}(?:,\d{3})*,\d{0,2}$")


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


def figure_matches(figure: Figure, value: float) -> bool:
    """Return True when ``figure`` shows ``value`` at its precision (``12.5%`` shows 0.125)."""
    return _matches(figure, value)


class GroundingChecker:
    """Holds the reference numbers of one answer's evidence."""

    def __init__(self, reference_text: str) -> None:
        self.figures = extract_figures(reference_text)
        self._references = [f.value * f.scale for f in self.figures if not math.isnan(f.value)]
        self._exact = {round(abs(v), 6) for v in self._references}
        self._tokens = {f.text for f in self.figures if math.isnan(f.value)}

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


class FigureGuard:
    """Keeps the figures a decoder writes to those of its evidence, one piece at a time.

    :meth:`choose` gets the text written so far and candidate next pieces, best first,
    and returns the first after which each figure the piece touches is either complete
    and grounded (:meth:`GroundingChecker.is_grounded`), or still being written and the
    start of a reference figure: its digits, commas dropped, begin some reference
    number as written, or that number times or divided by 100 (the checker's percent
    forms). A figure counts as still being written while nothing but one ``.`` or ``,``
    follows it (or an unfinished thousands group, as in ``1,23``) and it has no percent
    sign or scale word yet; a ``.`` after an ungrounded figure must be a decimal point
    that some reference figure has there, or the decoder would write itself into a
    figure it cannot finish.
    """

    def __init__(self, reference_text: str) -> None:
        self.checker = GroundingChecker(reference_text)
        forms: set[str] = set()
        for figure in self.checker.figures:
            forms.add(_digits(figure.text))
            if math.isnan(figure.value):
                continue
            value = abs(figure.value * figure.scale)
            forms.add(_digits(f"{value:.6f}".rstrip("0")))
            for shifted in (value * 100.0, value / 100.0):
                forms.update(f"{shifted:.{decimals}f}" for decimals in range(3))
        self._starts = {form[:end] for form in forms for end in range(1, len(form) + 1)}

    def allows(self, text: str, piece: str) -> bool:
        """Return True when ``text + piece`` keeps every figure it touches valid."""
        if not any(ch.isdigit() for ch in piece) and not any(
                ch.isdigit() for ch in text[-2:]):
            return True  # no figure is being written or ended
        written = text + piece
        touched = max(0, len(text) - 1)
        open_group = _OPEN_GROUP.search(written)
        if open_group is not None:
            if _digits(open_group.group()) not in self._starts:
                return False
            written = written[:open_group.start()]
        for figure in extract_figures(written):
            if figure.end < touched:
                continue
            if self.checker.is_grounded(figure):
                continue
            rest = written[figure.end:]
            open_ended = (rest in ("", ".", ",") and not figure.percent
                          and figure.scale == 1.0)
            # "4." goes on only as a decimal point that some reference figure has there
            written_so_far = _digits(figure.text) + ("." if rest == "." else "")
            if not (open_ended and written_so_far in self._starts):
                return False
        return True

    def choose(self, text: str, pieces: Sequence[str]) -> int:
        """Return the index of the first piece :meth:`allows`; 0 when none does."""
        for index, piece in enumerate(pieces):
            if self.allows(text, piece):
                return index
        return 0


def _digits(text: str) -> str:
    return _NOT_DIGITS.sub("", text).strip(".")


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
