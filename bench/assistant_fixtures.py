"""Shared evidence for the assistant benchmarks: a realistic snapshot and passages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.prompt import Evidence

QUESTIONS = Path(__file__).parent / "questions_assistant.jsonl"

SNAPSHOTS: dict[str, dict[str, Any]] = {
    "AAPL": {"price": 189.37, "volume": 41_234_567, "change_percent": 0.84, "bid": 189.36,
             "ask": 189.38, "timestamp": "2026-11-24T15:30:00Z",
             "indicators": {"sma_20": 187.12, "ema_20": 187.95, "rsi_14": 57.31, "macd": 0.4123,
                            "macd_signal": 0.3519, "macd_hist": 0.0604, "bb_upper": 192.4,
                            "bb_middle": 187.12, "bb_lower": 181.84, "atr_14": 1.87,
                            "vwap": 188.96}},
    "NVDA": {"price": 131.88, "volume": 212_004_310, "change_percent": -1.92,
             "timestamp": "2026-11-24T15:30:00Z",
             "indicators": {"sma_20": 135.4, "ema_20": 134.02, "rsi_14": 38.6, "macd": -1.204,
                            "macd_signal": -0.871, "macd_hist": -0.333, "bb_upper": 142.1,
                            "bb_middle": 135.4, "bb_lower": 128.7, "atr_14": 4.12,
                            "vwap": 132.5}},
    "MSFT": {"price": 415.12, "volume": 18_402_991, "change_percent": 0.12,
             "timestamp": "2026-11-24T15:30:00Z",
             "indicators": {"sma_20": 412.8, "ema_20": 413.3, "rsi_14": 51.2, "macd": 0.91,
                            "macd_signal": 0.88, "macd_hist": 0.03, "bb_upper": 421.5,
                            "bb_middle": 412.8, "bb_lower": 404.1, "atr_14": 5.02,
                            "vwap": 414.7}},
}
def _chain(spot: float, ivs: tuple[float, float, float], skews: tuple[float, float, float],
           pains: tuple[float, float, float], volumes: tuple[float, float],
           interest: tuple[float, float], gamma: float) -> dict[str, Any]:
    """A chain summary in the shape of ``market.chain_analytics.chain_summary``."""
    terms = [{"expiration": expiration, "days_to_expiry": days, "contracts": 120,
              "volume": 0.0, "open_interest": 0.0, "atm_iv": iv, "skew_25d": skew,
              "put_iv_25d": iv + skew / 2, "call_iv_25d": iv - skew / 2, "max_pain": pain}
             for (expiration, days), iv, skew, pain in zip(
                 (("2026-11-27", 3), ("2026-12-04", 10), ("2027-01-01", 38)), ivs, skews, pains,
                 strict=True)]
    calls, puts = volumes
    call_oi, put_oi = interest
    return {"underlying_price": spot, "contracts": 360,
            "put_call": {"call_volume": calls, "put_volume": puts, "call_open_interest": call_oi,
                         "put_open_interest": put_oi, "volume_ratio": puts / calls,
                         "open_interest_ratio": put_oi / call_oi},
            "term_structure": terms,
            "exposure": {"multiplier": 100, "total_gamma_exposure": gamma,
                         "call_gamma_exposure": gamma * 1.6, "put_gamma_exposure": -gamma * 0.6,
                         "total_delta_exposure": gamma * 40}}


OPTIONS: dict[str, dict[str, Any]] = {
    "AAPL": _chain(189.37, (0.2431, 0.2318, 0.2255), (0.0312, 0.0287, 0.0264),
                   (190.0, 187.5, 185.0), (48_210, 39_532), (402_118, 356_940), 1_254_300.0),
    "NVDA": _chain(131.88, (0.5212, 0.4876, 0.4631), (0.0455, 0.0412, 0.0398),
                   (130.0, 128.0, 125.0), (310_992, 395_011), (2_104_553, 2_390_117),
                   -3_418_900.0),
    "MSFT": _chain(415.12, (0.2104, 0.2032, 0.1987), (0.0221, 0.0209, 0.0194),
                   (415.0, 410.0, 410.0), (51_003, 32_640), (301_772, 254_006), 845_120.0),
}
PASSAGES: dict[str, list[dict[str, Any]]] = {
    "AAPL": [
        {"document_id": "aapl-10k", "title": "Apple 10-K 2024", "uri": "aapl-10k.pdf",
         "page": 21, "score": 0.9, "text": "Total net sales were $391.0 billion in fiscal 2024. "
         "iPhone net sales were $201.2 billion. Services net sales grew to $96.2 billion."},
        {"document_id": "aapl-10k", "title": "Apple 10-K 2024", "uri": "aapl-10k.pdf",
         "page": 40, "score": 0.8, "text": "Gross margin percentage was 46.2% in 2024 "
         "compared to 44.1% in 2023, driven by a higher Services mix."},
    ],
    "NVDA": [
        {"document_id": "nvda-10k", "title": "NVIDIA 10-K 2025", "uri": "nvda-10k.pdf",
         "page": 35, "score": 0.9, "text": "Revenue for fiscal 2025 was $130.5 billion, up 114% "
         "from a year ago. Data Center revenue was $115.2 billion."},
    ],
    "MSFT": [
        {"document_id": "msft-10k", "title": "Microsoft 10-K 2024", "uri": "msft-10k.pdf",
         "page": 44, "score": 0.9, "text": "Revenue increased $33.9 billion or 16% to $245.1 "
         "billion. Intelligent Cloud revenue increased 20%."},
    ],
    "": [
        {"document_id": "primer", "title": "Options Primer", "uri": "options-primer.pdf",
         "page": 3, "score": 0.7, "text": "A put/call ratio above 1 means more puts than calls "
         "traded. Implied volatility measures the expected move over the option's life."},
    ],
}


def evidence_for(question: str, symbol: str, intent: str) -> Evidence:
    """Return the evidence the assistant would build for ``question`` about ``symbol``."""
    evidence = Evidence(question=question, intent=intent)
    if symbol:
        evidence.add_market(symbol, SNAPSHOTS[symbol],
                            OPTIONS[symbol] if intent in {"options", "general"} else None)
    evidence.add_passages(PASSAGES.get(symbol, []) + PASSAGES[""])
    return evidence


def questions() -> list[dict[str, str]]:
    """Return the benchmark question set (bench/questions_assistant.jsonl)."""
    lines = QUESTIONS.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
