"""Write the bundled sample PDFs (run once; the PDFs are committed): an options primer
and a note on market structure, written for marketray so a fresh install can search.

    python -m rag.samples.make_samples
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).parent

OPTIONS_TITLE = "Options Primer for Marketray Users"
OPTIONS_SECTIONS: list[tuple[str, str]] = [
    (
        "What an option is",
        "An option is a contract that gives its holder the right, but not the obligation, to "
        "buy or sell an underlying asset at a fixed strike price on or before an expiration "
        "date. A call option gives the right to buy; a put option gives the right to sell. The "
        "buyer pays a premium to the writer (seller), who takes on the obligation. Listed US "
        "equity options cover 100 shares per contract and are identified by an OCC symbol that "
        "encodes the underlying, the expiration, the type and the strike.",
    ),
    (
        "Moneyness and intrinsic value",
        "A call is in the money when the underlying price is above the strike, and a put when "
        "it is below. Intrinsic value is the amount an option would be worth if exercised now: "
        "max(S - K, 0) for a call and max(K - S, 0) for a put. The rest of the premium is time "
        "value, which decays as expiration approaches. At-the-money options carry the most "
        "time value.",
    ),
    (
        "Black-Scholes-Merton pricing",
        "The Black-Scholes-Merton model prices European options from five inputs and one "
        "estimate: the underlying price S, the strike K, the time to expiry T in years, the "
        "risk-free rate r, the dividend yield q and the volatility sigma. Implied volatility is "
        "the sigma that makes the model price equal the market price; it is quoted per year. "
        "When the market price is outside the no-arbitrage bounds, no implied volatility "
        "exists. Put-call parity ties European calls and puts of the same strike and "
        "expiration: C - P = S exp(-qT) - K exp(-rT).",
    ),
    (
        "The Greeks",
        "Delta is the change in option price for a one-unit change in the underlying; calls "
        "have delta between 0 and 1, puts between -1 and 0. Gamma is the change in delta per "
        "one-unit move of the underlying and is largest near the money close to expiration. "
        "Theta is the time decay, quoted here per calendar day. Vega is the sensitivity to "
        "volatility per one volatility point (0.01). Rho is the sensitivity to interest rates "
        "per one rate point (0.01). A delta-hedged book is exposed mainly to gamma and vega.",
    ),
    (
        "Common strategies",
        "A covered call sells a call against shares already owned, trading upside for premium "
        "income. A protective put buys a put to limit losses on a long stock position. A "
        "vertical spread buys one option and sells another of the same type and expiration at "
        "a different strike, capping both risk and reward. A straddle buys a call and a put at "
        "the same strike and profits from large moves in either direction; a strangle does the "
        "same with out-of-the-money strikes at lower cost.",
    ),
    (
        "Open interest and volume",
        "Volume counts contracts traded during the session. Open interest counts contracts "
        "still open at the end of the previous day; it is published once a day by the "
        "clearing house. Rising open interest with rising prices suggests new money entering "
        "a trend. The put/call ratio compares put volume with call volume and is read as a "
        "sentiment gauge.",
    ),
]

MARKET_TITLE = "A Short Note on US Equity Market Structure"
MARKET_SECTIONS: list[tuple[str, str]] = [
    (
        "Venues",
        "US equities trade on registered exchanges such as NYSE and Nasdaq, on alternative "
        "trading systems including dark pools, and through wholesalers that internalise retail "
        "orders. Each venue runs its own order book; prices are linked by the order protection "
        "rule, which requires trades at or better than the best protected quotes.",
    ),
    (
        "Quotes and the NBBO",
        "The national best bid and offer (NBBO) is the highest bid and lowest ask across all "
        "protected exchange quotes, computed by the securities information processors. The "
        "bid-ask spread is the cost of immediacy: a market order buys at the ask and sells at "
        "the bid. The mid price is the average of bid and ask. IEX is a single exchange, so its "
        "quotes show a part of the market; the SIP feed consolidates all exchanges.",
    ),
    (
        "Market makers and liquidity",
        "Market makers post bids and offers continuously and earn the spread while carrying "
        "inventory risk. Liquidity is deepest near the open and the close, which gives intraday "
        "volume its U shape. Limit orders add liquidity and wait in the book; market orders "
        "remove it. Large orders are sliced by algorithms such as VWAP, which targets the "
        "volume-weighted average price over the day.",
    ),
    (
        "Bars and indicators",
        "One-minute bars summarise trades into open, high, low, close and volume. Technical "
        "indicators are computed on bars: the simple moving average (SMA) and exponential "
        "moving average (EMA) smooth prices, the relative strength index (RSI) measures the "
        "balance of gains and losses over 14 bars, MACD compares a 12- and a 26-period EMA, "
        "Bollinger bands sit two standard deviations around a 20-bar average, and the average "
        "true range (ATR) measures volatility in price units.",
    ),
    (
        "Settlement and halts",
        "US equity trades settle one business day after the trade date (T+1). Trading can be "
        "halted for pending news or paused by limit up-limit down bands when a price moves too "
        "far too fast. Market-wide circuit breakers halt all trading after declines of 7%, 13% "
        "and 20% in the S&P 500.",
    ),
]


def write(title: str, sections: list[tuple[str, str]], path: Path) -> None:
    """Write one sample PDF with a running header and page-number footer."""

    class Sample(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "I", 8)
            self.cell(0, 8, f"marketray samples - {title}", align="C")
            self.ln(10)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "I", 8)
            self.cell(0, 10, f"Page {self.page_no()}", align="C")

    pdf = Sample()
    pdf.set_title(title)
    pdf.set_author("marketray")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    for index, (heading, body) in enumerate(sections):
        if index and index % 2 == 0:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    pdf.output(str(path))


def main() -> None:
    """Write both samples next to this script."""
    write(OPTIONS_TITLE, OPTIONS_SECTIONS, HERE / "options_primer.pdf")
    write(MARKET_TITLE, MARKET_SECTIONS, HERE / "market_structure.pdf")


if __name__ == "__main__":
    main()
