"""rag.metadata: what a filing is, and what a question asks for."""

from __future__ import annotations

from rag.metadata import company_aliases, extract_metadata, parse_query

COVER_10K = """UNITED STATES SECURITIES AND EXCHANGE COMMISSION
FORM 10-K
For the fiscal year ended June 30, 2023
AMCOR PLC
(Exact name of registrant as specified in its charter)
Ordinary Shares, par value $0.01 per share AMCR New York Stock Exchange"""

PRESS = """Widgetco Reports Fourth Quarter Fiscal 2022 Results
CHICAGO--(BUSINESS WIRE)-- Widgetco, Inc. (NASDAQ: WDGT) today announced results."""


def test_10k_cover_page_gives_company_ticker_type_and_year():
    meta = extract_metadata("annual.pdf", [COVER_10K])

    assert meta.company == "Amcor Plc"
    assert meta.ticker == "AMCR"
    assert meta.doc_type == "10-K"
    assert meta.fiscal_year == 2023
    assert meta.period == "FY2023"
    assert "amcor" in meta.aliases


def test_earnings_release_gives_quarter_and_exchange_ticker():
    meta = extract_metadata("release.pdf", [PRESS])

    assert meta.doc_type == "earnings"
    assert meta.ticker == "WDGT"
    assert (meta.fiscal_year, meta.fiscal_quarter) == (2022, 4)


def test_file_name_names_company_period_and_type():
    meta = extract_metadata("BESTBUY_2024Q2_10Q.pdf", ["no cover page here"])

    assert meta.doc_type == "10-Q"
    assert meta.period == "FY2024Q2"
    assert "bestbuy" in meta.aliases


def test_aliases_drop_legal_suffixes_and_keep_distinctive_first_word():
    aliases = company_aliases("MGM Resorts International")

    assert {"mgm", "mgmresorts"} <= set(aliases)


def test_query_names_company_years_and_quarter():
    intent = parse_query("Did Best Buy's cash drop between FY2023 and Q2 of FY2024?",
                         {"bestbuy", "boeing"})

    assert intent.aliases == {"bestbuy"}
    assert intent.years == [2023, 2024]
    assert intent.quarter == 2


def test_alias_does_not_match_inside_another_word():
    intent = parse_query("What is the mgmt fee for Boeingstyle jets?", {"mgm", "boeing"})

    assert intent.aliases == set()
