"""Find what a document is (company, ticker, type, fiscal period) and what a query asks for.

Filings of one company in different years read alike; knowing the company and the
period from both sides is what lets retrieval pick the right filing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

DOC_TYPES = ("10-K", "10-Q", "8-K", "earnings", "other")

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
)
_COMPANY_SUFFIXES = {
    "inc", "incorporated", "corp", "corporation", "co", "company", "plc", "ltd", "limited",
    "llc", "lp", "sa", "ag", "nv", "holdings", "group", "the", "and", "international",
}
_GENERIC_FIRST_WORDS = {
    "the", "first", "american", "general", "united", "national", "international", "global",
    "new", "best", "bank", "capital", "financial",
}
_EXCHANGE_TICKER = re.compile(
    r"\((?:NYSE|NASDAQ|Nasdaq|NYSE American|NYSE Arca|Cboe)\s*:\s*([A-Z][A-Z.]{0,5})\)"
)
_COVER_TICKER = re.compile(
    r"\b([A-Z][A-Z.]{0,5})\s+(?:The\s+)?(?:New York Stock Exchange|Nasdaq|NASDAQ|NYSE)"
)
_REGISTRANT = re.compile(r"\n([^\n]{2,80})\n\(Exact name of (?:the )?registrant", re.IGNORECASE)
_PRESS_COMPANY = re.compile(
    r"([A-Z][\w&.,' -]{1,60}?)\s*\((?:NYSE|NASDAQ|Nasdaq|NYSE American)\s*:"
)
_FY_ENDED = re.compile(
    rf"fiscal year ended\s+(?:{_MONTHS})\s+\d{{1,2}},?\s+((?:19|20)\d\d)", re.IGNORECASE
)
_QUARTER_ENDED = re.compile(
    rf"quarterly period ended\s+(?:{_MONTHS})\s+\d{{1,2}},?\s+((?:19|20)\d\d)", re.IGNORECASE
)
_RELEASE_PERIOD = re.compile(
    r"(first|second|third|fourth)\s+quarter\s+(?:and\s+full\s+year\s+)?(?:fiscal\s+)?((?:19|20)\d\d)",
    re.IGNORECASE,
)
_ORDINAL_QUARTER = {"first": 1, "second": 2, "third": 3, "fourth": 4}
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)(?!\d)")
_QUERY_YEAR = re.compile(r"\b(?:FY|fiscal(?:\s+year)?)?\s*'?((?:19|20)\d\d)\b", re.IGNORECASE)
_QUERY_QUARTER = re.compile(r"\b(?:Q([1-4])|([1-4])Q|(first|second|third|fourth)\s+quarter)\b",
                            re.IGNORECASE)


@dataclass(slots=True)
class DocumentMetadata:
    """What a document is; every field may be unknown (``None``)."""

    title: str
    company: str | None = None
    ticker: str | None = None
    doc_type: str = "other"
    fiscal_year: int | None = None
    fiscal_quarter: int | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def period(self) -> str | None:
        """Return the period as ``FY2023`` or ``FY2024Q2`` (``None`` when unknown)."""
        if self.fiscal_year is None:
            return None
        quarter = f"Q{self.fiscal_quarter}" if self.fiscal_quarter else ""
        return f"FY{self.fiscal_year}{quarter}"

    def as_dict(self) -> dict[str, Any]:
        """Return the fields plus ``period`` as a plain dict."""
        data = asdict(self)
        data["period"] = self.period
        return data


def compact(text: str) -> str:
    """Return ``text`` lower-cased with everything but letters and digits removed."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def company_aliases(*names: str | None) -> list[str]:
    """Return compact name variants used to spot a company in a query (``bestbuy``, ``mgm``)."""
    aliases: set[str] = set()
    for name in names:
        if not name:
            continue
        words = [w for w in re.split(r"[^a-z0-9&]+", name.lower()) if w]
        core = [w for w in words if w not in _COMPANY_SUFFIXES]
        for variant in (words, core):
            joined = "".join(variant)
            if len(joined) >= 3:
                aliases.add(joined)
        if core and len(core[0]) >= 3 and core[0] not in _GENERIC_FIRST_WORDS:
            aliases.add(core[0])
    return sorted(aliases)


def _from_filename(uri: str) -> dict[str, Any]:
    stem = PurePath(uri).stem
    tokens = [t for t in re.split(r"[_\-\s.]+", stem) if t]
    found: dict[str, Any] = {}
    company_tokens: list[str] = []
    for token in tokens:
        upper = token.upper()
        period = re.fullmatch(r"(?:FY)?((?:19|20)\d\d)(?:Q([1-4]))?", upper)
        if period:
            found.setdefault("fiscal_year", int(period.group(1)))
            if period.group(2):
                found.setdefault("fiscal_quarter", int(period.group(2)))
            continue
        if re.fullmatch(r"Q[1-4]", upper):
            found.setdefault("fiscal_quarter", int(upper[1]))
            continue
        doc_type = {"10K": "10-K", "10Q": "10-Q", "8K": "8-K", "EARNINGS": "earnings"}.get(upper)
        if doc_type:
            found.setdefault("doc_type", doc_type)
            continue
        if "fiscal_year" not in found and "doc_type" not in found:
            company_tokens.append(token)
    if company_tokens and ("fiscal_year" in found or "doc_type" in found):
        found["company"] = " ".join(company_tokens)
    return found


def _doc_type_from_text(head: str) -> str | None:
    upper = head.upper()
    if re.search(r"FORM\s+10-K\b|ANNUAL REPORT PURSUANT TO SECTION", upper):
        return "10-K"
    if re.search(r"FORM\s+10-Q\b|QUARTERLY REPORT PURSUANT TO SECTION", upper):
        return "10-Q"
    if re.search(r"FORM\s+8-K\b|CURRENT REPORT PURSUANT TO SECTION", upper):
        return "8-K"
    if re.search(r"(REPORTS?|ANNOUNCES?|REPORTED)\b.{0,80}\bRESULTS", upper, re.DOTALL):
        return "earnings"
    return None


def _name_case(name: str) -> str:
    name = name.strip(" ,.")
    return name.title() if name.isupper() else name


def extract_metadata(uri: str, pages: list[str], pdf_title: str | None = None) -> DocumentMetadata:
    """Return the document's metadata from its first pages and its file name.

    The file name wins where it names company, year or type (``AMCOR_2023_10K.pdf``);
    the cover page fills in the rest (registrant name, trading symbol, period ended).
    """
    head = "\n" + "\n".join(pages[:3])[:12_000]
    from_name = _from_filename(uri)
    registrant = None
    if match := _REGISTRANT.search(head):
        registrant = _name_case(match.group(1))
    elif match := _PRESS_COMPANY.search(head):
        registrant = _name_case(match.group(1).split(" - ")[-1].split("--")[-1])
    ticker = None
    if (match := _EXCHANGE_TICKER.search(head)) or (match := _COVER_TICKER.search(head)):
        ticker = match.group(1)

    doc_type = from_name.get("doc_type") or _doc_type_from_text(head) or "other"
    year = from_name.get("fiscal_year")
    quarter = from_name.get("fiscal_quarter")
    if year is None:
        if (match := _FY_ENDED.search(head)) or (match := _QUARTER_ENDED.search(head)):
            year = int(match.group(1))
        elif match := _RELEASE_PERIOD.search(head):
            quarter = quarter or _ORDINAL_QUARTER[match.group(1).lower()]
            year = int(match.group(2))
    company = registrant or from_name.get("company")
    title_parts = [company or PurePath(uri).stem, doc_type if doc_type != "other" else None]
    if year:
        title_parts.append(f"FY{year}" + (f"Q{quarter}" if quarter else ""))
    title = pdf_title if pdf_title and not company and len(pdf_title) > 8 else None
    title = title or " ".join(p for p in title_parts if p)
    return DocumentMetadata(
        title=title,
        company=company,
        ticker=ticker,
        doc_type=doc_type,
        fiscal_year=year,
        fiscal_quarter=quarter,
        aliases=company_aliases(company, from_name.get("company"), ticker and ticker.lower()),
    )


@dataclass(slots=True)
class QueryIntent:
    """What a question names: companies (by document alias), years, quarter, document type."""

    aliases: set[str] = field(default_factory=set)
    years: list[int] = field(default_factory=list)
    quarter: int | None = None
    doc_type: str | None = None


def parse_query(query: str, known_aliases: set[str]) -> QueryIntent:
    """Return the companies (among ``known_aliases``), years, quarter and type ``query`` names.

    Companies are matched on word n-grams compacted (``Best Buy`` -> ``bestbuy``), so an
    alias never matches inside another word.
    """
    words = [compact(w) for w in re.split(r"[\s/]+", query.replace("'s ", " ")) if compact(w)]
    grams = {"".join(words[i : i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
    grams |= {g[:-1] for g in grams if g.endswith("s")}  # possessive "Boeings"
    intent = QueryIntent(aliases=grams & known_aliases)
    intent.years = sorted({int(m) for m in _QUERY_YEAR.findall(query)})
    if match := _QUERY_QUARTER.search(query):
        digit = match.group(1) or match.group(2)
        intent.quarter = int(digit) if digit else _ORDINAL_QUARTER[match.group(3).lower()]
    upper = query.upper()
    for pattern, doc_type in (("10-K", "10-K"), ("10K", "10-K"), ("10-Q", "10-Q"),
                              ("10Q", "10-Q"), ("8-K", "8-K"), ("EARNINGS", "earnings")):
        if pattern in upper:
            intent.doc_type = doc_type
            break
    return intent
