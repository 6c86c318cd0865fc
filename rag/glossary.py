"""Finance glossary: spell out what a named ratio or metric is computed from.

Questions name a metric ("quick ratio", "EBITDA"); filings print its ingredients as
statement line items ("total current assets", "depreciation and amortization"). Adding
the ingredients to the query lets lexical and dense search find the statement page.
Standard textbook definitions only; nothing here is specific to one filing.
"""

from __future__ import annotations

import re

METRIC_TERMS: dict[str, str] = {
    r"quick ratio|acid[- ]test": "cash and cash equivalents receivables total current assets "
    "total current liabilities balance sheet",
    r"current ratio|working capital|liquidity": "total current assets total current liabilities "
    "balance sheet",
    r"gross (?:profit )?margin|gross profit": "net sales revenues cost of sales cost of goods "
    "sold gross profit",
    r"operating margin|operating income|\bebit\b": "operating income operating profit revenues "
    "net sales",
    r"ebitda": "operating income depreciation and amortization revenues",
    r"capex|capital expenditure|capital spending": "capital spending capital expenditures "
    "purchases of property plant and equipment cash flows investing activities",
    r"free cash flow": "net cash provided by operating activities capital expenditures",
    r"effective tax rate|tax rate": "effective tax rate provision for income taxes income "
    "before income taxes",
    r"interest coverage": "interest expense operating income",
    r"debt[- ]to[- ]equity|leverage|net debt": "total debt long-term debt shareholders equity "
    "borrowings",
    r"return on (?:assets|equity)|\broa\b|\broe\b": "net income total assets shareholders equity",
    r"inventory turnover|days inventory": "inventories cost of sales",
    r"receivables? turnover|days sales outstanding|\bdso\b": "accounts receivable net sales",
    r"dividend payout|dividends": "dividends declared per share net income",
    r"share repurchases?|buybacks?|stock repurchases?": "repurchase of common stock shares "
    "repurchased treasury",
    r"top[- ]?line|revenue growth|sales growth": "net revenues net sales total revenues",
    r"legal (?:battles?|proceedings|matters)|lawsuits?|litigation": "legal proceedings "
    "litigation lawsuit contingencies",
    r"restructuring": "restructuring and impairment charges severance",
    r"segments?|geograph\w*|regions?": "reportable segments geographic regions net revenue by "
    "segment",
}
_COMPILED = [(re.compile(pattern, re.IGNORECASE), terms) for pattern, terms in METRIC_TERMS.items()]


def expand_query(query: str) -> str:
    """Return ``query`` followed by the statement terms of every metric it names."""
    extra = [terms for pattern, terms in _COMPILED if pattern.search(query)]
    return f"{query} {' '.join(extra)}" if extra else query
