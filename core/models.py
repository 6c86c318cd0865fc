"""Public data models (CONTRACT §5): what the API returns and clients parse.

Timestamps are timezone-aware UTC. Prices are in the instrument's currency,
``time_to_expiry`` in years, Greeks in vollib's units (see ``market.greeks``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OptionType = Literal["call", "put"]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _aware_utc(cls, value: object) -> object:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("timestamps must be timezone-aware (UTC)")
            return value.astimezone(UTC)
        return value


class MarketData(_Model):
    """Latest state of one underlying: last price, volume and live indicators."""

    symbol: str
    price: float
    volume: float = Field(description="shares traded in the current session")
    timestamp: datetime
    indicators: dict[str, float | None] = Field(
        description="sma_20, ema_20, rsi_14, macd, macd_signal, macd_hist, bb_upper, "
        "bb_middle, bb_lower, atr_14, vwap, ...; null while warming up"
    )
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    previous_close: float | None = None
    change_percent: float | None = None


class Greeks(_Model):
    """Black-Scholes-Merton sensitivities in vollib's units."""

    delta: float = Field(description="per 1 of the underlying")
    gamma: float = Field(description="per 1 of the underlying, per 1 of the underlying")
    theta: float = Field(description="per calendar day")
    vega: float = Field(description="per 1 volatility point (0.01)")
    rho: float = Field(description="per 1 rate point (0.01)")


class OptionsData(_Model):
    """One option contract with its quote, activity, implied volatility and Greeks."""

    symbol: str = Field(description="the underlying")
    expiration: date
    strike: float
    type: OptionType
    price: float | None = Field(description="mid when bid and ask > 0, else last trade")
    volume: int
    open_interest: int
    contract: str = Field(description="OCC option symbol")
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    time_to_expiry: float = Field(description="years")
    implied_volatility: float | None = None
    greeks: Greeks | None = None
    vendor_implied_volatility: float | None = None
    vendor_greeks: Greeks | None = None


class PricingModel(_Model):
    """The model and inputs used for a chain's implied volatility and Greeks."""

    name: Literal["black_scholes_merton"] = "black_scholes_merton"
    rate: float = Field(description="continuously compounded risk-free rate")
    dividend_yield: float = Field(description="continuous dividend yield")


class OptionsChain(_Model):
    """An underlying's option contracts, filtered as requested."""

    symbol: str
    underlying_price: float
    as_of: datetime
    model: PricingModel
    contracts: list[OptionsData]


class Bar(BaseModel):
    """One OHLCV bar; indicator fields (as of the bar's close) ride along as extras."""

    model_config = ConfigDict(extra="allow")

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarsResponse(BaseModel):
    """Bars of one symbol, oldest first."""

    symbol: str
    timeframe: str
    bars: list[Bar]


class Source(_Model):
    """A retrieved passage that an answer may cite."""

    document_id: str
    title: str
    uri: str = Field(description="file name or URL the document came from")
    page: int = Field(ge=1, description="1-based page number")
    score: float
    text: str


class ChatMessage(_Model):
    """One message of a conversation."""

    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: datetime = Field(default_factory=utc_now)
    context: dict[str, object] = Field(default_factory=dict)
