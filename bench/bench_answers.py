"""Usefulness of /analyze answers: asked quantities stated correctly, from the same response.

Runs the written questions of ``bench/questions_answers.jsonl`` (each lists the quantities
it asks for, as paths into the response's structured data) through ``Assistant.analyze``
— the /analyze handler's work, without the HTTP hop — over the simulator's market in
process (``bench/answers_market.py``: real indicators, chain analytics and bar analysis
at a fixed clock) and a small knowledge base of filing passages. Each response is scored
against its own structured data, read here independently of the composer:

* ``fully_answered``: share of questions whose every asked quantity is stated — a
  sentence that names it shows its value at the precision written (target >= 0.95);
* ``quantities_correct``: share of asked quantities stated correctly;
* ``unsupported_figures``: figures in answers that are neither a number of the response's
  data, one derived here from it (expected moves, distances), the question's, a date or
  time of the data, nor an indicator's period or threshold (target 0);
* ``junk_rate``: share of answers with placeholder or boilerplate text, a repeated
  sentence, or a made-up CamelCase name (target 0);
* p50/p99 seconds to the whole answer (composed path target: p50 <= 1 s).

``--model local`` runs the same questions with the configured model (``load_generator``:
``MARKETRAY_LLM_URL``, ``MARKETRAY_LLM_MODEL``, else the built-in one) phrasing under the
gate (``answer_mode=phrase``) and reports the same figures plus time to first piece and
to the model's first token, side by side. With ``../shared/corpus/finbench-dev`` present
(``--finbench``) it also reports the share of its questions whose gold figure appears in
the answer: extractive quotes against the model answering from the same passages
(``--finbench-model``; ``bench/finbench_answers.py`` alone does the same).

    python bench/bench_answers.py [--model none|local] [--model-limit 20] [--finbench]

figure = composed path's fully-answered rate; baseline = the 0.95 target.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.answers_market import SimMarket  # noqa: E402
from bench.assistant_fixtures import PASSAGES  # noqa: E402
from bench.common import emit  # noqa: E402

QUESTIONS = Path(__file__).with_name("questions_answers.jsonl")
TARGET = 0.95
LABELS = {
    "price": ("trad", "price"), "change_percent": ("day", " up ", "down"),
    "rsi_14": ("rsi",), "macd": ("macd",), "macd_signal": ("signal",),
    "stoch_k": ("stochastic", "%k"), "adx_14": ("adx",), "sma_20": ("sma",),
    "ema_20": ("ema",), "vwap": ("vwap",), "bb_lower": ("band",), "bb_upper": ("band",),
    "atr_14": ("atr",), "expected_move": ("move",), "atm_iv": ("implied volatility", " iv"),
    "390_bars": ("realised", "realized"), "volume_ratio": ("volume",),
    "open_interest_ratio": ("open-interest", "open interest"), "max_pain": ("max pain",),
    "total_gamma_exposure": ("gamma",), "total_delta_exposure": ("delta",),
    "skew_25d": ("skew",), "support": ("support",), "resistance": ("resistance",),
    "cumulative_relative_volume": ("usual", "average"), "volume": ("volume", "shares"),
    "total": ("open interest",), "unusual_activity": ("unusual",),
}
# Indicator periods, thresholds and the chain's conventions an answer may name.
CONSTANTS = (14, 12, 26, 9, 20, 5, 3, 2, 1, 0, 30, 70, 80, 25, 100, 390, 365)
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_JUNK = re.compile(r"\[(?!\d{1,3}\])[^\]]*\]|lorem ipsum|\bpaste\b|\binsert\b|placeholder|"
                   r"as an ai|language model|i cannot|i'm sorry|figure removed|\{[^}]*\}",
                   re.IGNORECASE)
_CAMEL = re.compile(r"\b[A-Z][a-z]+[A-Z][A-Za-z]*\b")


class _Knowledge:
    """The knowledge base's ``search(query, k, filters)`` over a few filing passages."""

    def __init__(self) -> None:
        self.docs = [{**doc, "ticker": ticker or None}
                     for ticker, docs in PASSAGES.items() for doc in docs]

    def search(self, query: str, k: int = 3, filters: Mapping[str, Any] | None = None
               ) -> list[dict[str, Any]]:
        from rag.lexical import tokenize

        wanted = set(tokenize(query))
        docs = [d for d in self.docs if not filters or d["ticker"] == filters.get("ticker")]
        ranked = sorted(docs, key=lambda d: -len(wanted & set(tokenize(d["text"]))))
        return [{k_: d[k_] for k_ in ("document_id", "title", "uri", "page", "score", "text")}
                for d in ranked[:k]]


def _data_of(body: Mapping[str, Any], symbol: str) -> Mapping[str, Any] | None:
    if not symbol or symbol == body["symbol"]:
        return body
    found = body.get("context", {}).get("data", {}).get(symbol)
    return found if isinstance(found, Mapping) else None


def read(data: Mapping[str, Any], path: str) -> float | None:
    """Read a path such as ``options.term_structure[2026-12-04].atm_iv`` (None if absent)."""
    if path.startswith("expected_move["):
        day = path[len("expected_move["):-1]
        row = next((r for r in data["options"].get("term_structure", [])
                    if r["expiration"] == day), None)
        spot = data["options"].get("underlying_price")
        if row is None or row.get("atm_iv") is None or spot is None:
            return None
        return float(spot * row["atm_iv"] * math.sqrt(row["days_to_expiry"] / 365.0))
    if path.startswith("len:"):
        node = read_node(data, path[4:])
        return float(len(node)) if isinstance(node, list) else None
    node = read_node(data, path)
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def read_node(data: Any, path: str) -> Any:
    node = data
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if node is None:
            return None
        if part.startswith("["):
            key = part[1:-1]
            if key.isdigit():
                node = node[int(key)] if int(key) < len(node) else None
            else:
                node = next((r for r in node if r.get("expiration") == key), None)
        else:
            node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _labels(path: str) -> tuple[str, ...]:
    if path.startswith("expected_move"):
        return LABELS["expected_move"]
    leaf = re.sub(r"\[.*?\]", "", path).split(".")
    named = [part for part in reversed(leaf) if part in LABELS]
    if len(named) > 1 and named[0] == "price":  # analysis.levels.support[0].price
        return LABELS[named[1]]
    return LABELS[named[0]] if named else (leaf[-1],)


def stated(answer: str, value: float, labels: Sequence[str], scale: float = 1.0) -> bool:
    """True when one sentence names the quantity and shows ``value`` at its precision."""
    from rag.grounding import extract_figures, figure_matches

    for sentence in _SENTENCES.split(answer):
        lowered = f" {sentence.lower()} "
        if any(label in lowered for label in labels) and any(
                figure_matches(f, value * scale) for f in extract_figures(sentence)):
            return True
    return False


def score(item: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """Score one response against its own structured data."""
    answer = body["answer"]
    asked, correct, missing = 0, 0, []
    for symbol, path in item["asked"]:
        asked += 1
        if path.startswith("quote:"):
            ok = path[6:] in answer
        elif path == "patterns":
            data = _data_of(body, symbol) or {}
            names = [str(p["name"]).replace("_", " ") for p in data.get("patterns", [])[:3]]
            ok = all(name in answer for name in names) if names else "No candlestick" in answer
        else:
            data = _data_of(body, symbol or item["symbol"])
            value = read(data, path) if data is not None else None
            labels = _labels(path)
            scale = 100.0 if path.endswith("skew_25d") else 1.0
            if value is None:  # not in the data: the answer must say so
                ok = "not available" in answer or any(
                    f"no {label.strip()}" in answer.lower() for label in labels)
            else:
                ok = stated(answer, value, labels, scale)
        correct += ok
        if not ok:
            missing.append(f"{symbol or item['symbol']} {path}")
    return {"asked": asked, "correct": correct, "missing": missing,
            "unsupported": unsupported(item, body), "junk": junk(answer)}


def _numbers(node: Any, out: list[float]) -> None:
    if isinstance(node, Mapping):
        for value in node.values():
            _numbers(value, out)
    elif isinstance(node, list):
        for value in node:
            _numbers(value, out)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        out.append(float(node))
    elif isinstance(node, str):
        from rag.grounding import extract_figures

        out.extend(f.value * f.scale for f in extract_figures(node) if not math.isnan(f.value))
        out.extend(float(x) for x in re.findall(r"\d+(?:\.\d+)?", node))


def _derived(data: Mapping[str, Any], out: list[float]) -> None:
    market, options = data.get("market", {}), data.get("options", {})
    price = market.get("price")
    spot = options.get("underlying_price") or price
    for row in options.get("term_structure", []):
        if row.get("atm_iv") is not None and spot:
            move = spot * row["atm_iv"] * math.sqrt(row["days_to_expiry"] / 365.0)
            out.extend([move, move / spot])
        if row.get("max_pain") is not None and price:
            out.append(abs(row["max_pain"] - price))
        if row.get("skew_25d") is not None:
            out.append(row["skew_25d"] * 100)
    vwap = market.get("indicators", {}).get("vwap")
    if vwap and price:
        out.append(abs(price / vwap - 1.0) * 100)
    if options.get("unusual_activity") is not None:
        out.append(float(len(options["unusual_activity"])))


def unsupported(item: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """Figures of the answer found nowhere in the response's data (see the module)."""
    from rag.grounding import extract_figures, figure_matches

    values: list[float] = list(CONSTANTS)
    datas = [body, *body.get("context", {}).get("data", {}).values()]
    for data in datas:
        _numbers({k: data.get(k) for k in ("market", "options", "analysis", "patterns")},
                 values)
        _derived(data, values)
    _numbers([[s.get("title", ""), s.get("text", ""), s.get("page")]
              for s in body.get("sources", [])], values)
    _numbers(item["question"], values)
    bad = []
    for figure in extract_figures(body["answer"]):
        if math.isnan(figure.value):
            continue
        if not any(figure_matches(figure, v) for v in values):
            bad.append(figure.text)
    return bad


def junk(answer: str) -> bool:
    """True for placeholder/boilerplate text, a repeated sentence or a made-up name."""
    sentences = [s.strip().lower() for s in _SENTENCES.split(answer) if s.strip()]
    camel = [n for n in _CAMEL.findall(answer) if n not in {"MarketRay", "iPhone"}]
    return bool(_JUNK.search(answer)) or len(sentences) != len(set(sentences)) or bool(camel)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def run_path(assistant: Any, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Ask every question through ``assistant.analyze``; return the scores and timings."""
    rows, seconds, first, model_first = [], [], [], []
    for item in items:
        started = time.perf_counter()
        body = await assistant.analyze(item["symbol"], item["question"])
        seconds.append(time.perf_counter() - started)
        timings = body["context"]["timings"]
        first.append(float(timings.get("first_piece_s", seconds[-1])))
        if "model_first_token_s" in timings:
            model_first.append(float(timings["model_first_token_s"]))
        rows.append({**score(item, body), "question": item["question"], "kind": item["kind"],
                     "source": body["context"]["answer"]["source"], "answer": body["answer"]})
    asked = sum(r["asked"] for r in rows)
    return {
        "questions": len(rows),
        "fully_answered": round(sum(r["correct"] == r["asked"] for r in rows) / len(rows), 4),
        "quantities_correct": round(sum(r["correct"] for r in rows) / asked, 4),
        "unsupported_figures": sum(len(r["unsupported"]) for r in rows),
        "junk_rate": round(sum(r["junk"] for r in rows) / len(rows), 4),
        "p50_s": round(statistics.median(seconds), 4),
        "p99_s": round(percentile(seconds, 0.99), 4),
        "first_piece_p50_s": round(statistics.median(first), 4),
        **({"model_first_token_p50_s": round(statistics.median(model_first), 4)}
           if model_first else {}),
        "sources": {s: sum(r["source"] == s for r in rows)
                    for s in ("composed", "model", "model+composed")},
        "failures": [{"question": r["question"], "missing": r["missing"],
                      "unsupported": r["unsupported"], "answer": r["answer"][:400]}
                     for r in rows if r["missing"] or r["unsupported"] or r["junk"]][:8],
    }


def assistant_for(market: SimMarket, generator: Any, mode: str) -> Any:
    from core.settings import Settings
    from market.cache import InMemoryCache
    from serve.assistant import Assistant

    settings = Settings(secret_key="bench-secret-0123456789abcdef-0123", answer_mode=mode,
                        symbols=",".join(market.symbols))
    services = SimpleNamespace(settings=settings, market=market, knowledge=_Knowledge(),
                               generator=generator, cache=InMemoryCache())
    return Assistant(services)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("none", "local"), default="none")
    parser.add_argument("--model-limit", type=int, default=20,
                        help="questions for the model path (each takes seconds on a CPU)")
    parser.add_argument("--finbench", action="store_true")
    parser.add_argument("--finbench-model", action="store_true")
    parser.add_argument("--index-dir", default="/tmp/marketray-bench-finbench")
    args = parser.parse_args()
    import json

    items = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    market = SimMarket()
    setup_s = time.perf_counter() - started
    composed_assistant = assistant_for(market, None, "composed")
    asyncio.run(run_path(composed_assistant, items[:3]))  # warm numba and imports
    composed = asyncio.run(run_path(composed_assistant, items))
    result: dict[str, Any] = {
        "name": "answers", "machine": "shared 2-core host (timings noisy)",
        "figure": composed["fully_answered"], "baseline": TARGET,
        "ratio": round(composed["fully_answered"] / TARGET, 4), "market_setup_s": round(
            setup_s, 1), "composed": composed,
    }
    if args.model == "local":
        from rag.generation import load_generator
        from serve.models import GeneratorService

        settings = composed_assistant.services.settings
        generator, report = load_generator(settings)
        service = GeneratorService(settings, generator=generator)
        try:
            subset = items[:args.model_limit]
            model = asyncio.run(run_path(assistant_for(market, service, "phrase"), subset))
            same = asyncio.run(run_path(composed_assistant, subset))
        finally:
            service.close()
        result["model"] = {"backend": report.to_dict().get("model", report.backend), **model}
        result["composed_on_model_subset"] = same
    if args.finbench:
        from bench.finbench_answers import finbench

        try:
            result["finbench"] = finbench(Path(args.index_dir), with_model=args.finbench_model)
        except Exception as exc:  # the usefulness figures above still print
            result["finbench"] = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)


if __name__ == "__main__":
    main()
