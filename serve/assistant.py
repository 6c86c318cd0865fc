"""The research assistant: market snapshot + passages → grounded, cited answer.

One message goes through: plan (symbols and intent, ``rag.query``) → gather (live
MarketData and option-chain summary from the shard actors, passages from the knowledge
base filtered by company) → prompt (``rag.prompt``: snapshot block and numbered,
fenced passages) → stream tokens from the Generator deployment → post-check (citations
that exist, numbers found in the evidence, ``rag.grounding``) → session history.

:class:`Assistant` is a plain class over :class:`serve.deps.Services`; handles and
plain objects are both accepted for ``knowledge`` and ``generator`` so tests run it
without Ray.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from market.errors import MarketrayError, NotFound, Unavailable
from market.models import ChatMessage, MarketData
from rag.grounding import GroundingChecker, GroundingReport, Mode, resolve_citations
from rag.prompt import Evidence, build_messages, reference_text
from rag.query import QueryPlan, plan_query
from rag.sessions import SessionStore
from serve.auth import Principal
from serve.deps import Services

log = logging.getLogger("marketray.assistant")

MAX_SYMBOLS = 3
MARKET_FIELDS = ("price", "volume", "timestamp", "change_percent", "bid", "ask", "indicators")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _call(target: Any, method: str, *args: Any) -> Any:
    """Call ``method`` on a Serve handle (``.remote``) or a plain object."""
    bound = getattr(target, method)
    remote = getattr(bound, "remote", None)
    return remote(*args) if remote is not None else bound(*args)


class Assistant:
    """Answers chat messages and builds /analyze results from services."""

    def __init__(
        self, services: Services, *, passages: int = 3, max_new_tokens: int = 160,
        grounding_mode: Mode = "strip", history_messages: int = 20,
    ) -> None:
        self.services = services
        self.passages = passages
        self.max_new_tokens = max_new_tokens
        self.grounding_mode = grounding_mode
        self.sessions = SessionStore(services.cache, max_messages=history_messages)

    # -- gathering ---------------------------------------------------------------------

    async def _market(self, symbol: str, with_options: bool) -> tuple[MarketData, dict[str, Any]]:
        snapshot_call = self.services.market.snapshot(symbol)
        if not with_options:
            return await snapshot_call, {}
        snapshot, summary = await asyncio.gather(
            snapshot_call, self._chain_summary(symbol), return_exceptions=False)
        return snapshot, summary

    async def _chain_summary(self, symbol: str) -> dict[str, Any]:
        try:
            summary = await self.services.market.chain_summary(symbol)
        except (MarketrayError, ImportError, ValueError, KeyError) as exc:
            log.info("no chain summary for %s: %s", symbol, exc)
            return {}
        return dict(summary or {})

    async def _retrieve(self, plan: QueryPlan, k: int) -> list[dict[str, Any]]:
        knowledge = self.services.knowledge
        if knowledge is None or k <= 0:
            return []
        try:
            results = await _maybe_await(
                _call(knowledge, "search", plan.search_query, k, plan.filters or None))
            if not results and plan.filters:
                results = await _maybe_await(_call(knowledge, "search", plan.search_query, k, None))
        except Exception as exc:  # retrieval is optional: answer from market data alone
            log.warning("retrieval failed: %s", exc)
            return []
        return [dict(item) for item in (results or [])][:k]

    async def gather(
        self, message: str, context: Mapping[str, Any] | None, previous_symbols: Sequence[str] = (),
        *, analysis: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[QueryPlan, Evidence, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Return the plan, the evidence, the sources and the market values used."""
        plan = plan_query(message, self.services.market.symbols, context, previous_symbols)
        symbols = plan.symbols[:MAX_SYMBOLS]
        with_options = plan.intent in {"options", "general"}
        market_calls = [self._market(symbol, with_options) for symbol in symbols]
        results = await asyncio.gather(self._retrieve(plan, self.passages), *market_calls,
                                       return_exceptions=True)
        sources = results[0] if isinstance(results[0], list) else []
        evidence = Evidence(question=message, intent=plan.intent)
        used: dict[str, dict[str, Any]] = {}
        for symbol, result in zip(symbols, results[1:], strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, NotFound):
                    continue
                log.warning("market data for %s unavailable: %s", symbol, result)
                continue
            snapshot, summary = result
            data = snapshot.model_dump(mode="json")
            evidence.add_market(symbol, data, summary,
                                analysis=(analysis or {}).get(symbol))
            used[symbol] = {key: data.get(key) for key in MARKET_FIELDS}
        evidence.add_passages(sources)
        return plan, evidence, sources, used

    # -- generation --------------------------------------------------------------------

    async def _tokens(self, messages: list[dict[str, str]], evidence: Evidence,
                      max_new_tokens: int) -> AsyncIterator[str]:
        generator = self.services.generator
        if generator is None:
            raise Unavailable("no text generator is deployed")
        options = getattr(generator, "options", None)
        if options is not None and hasattr(generator, "deployment_name"):
            response = options(stream=True).stream.remote(messages, max_new_tokens,
                                                           evidence.to_dict())
            try:
                async for piece in response:
                    yield piece
            finally:
                cancel = getattr(response, "cancel", None)
                if cancel is not None:
                    cancel()
        else:
            async for piece in generator.stream(messages, max_new_tokens, evidence.to_dict()):
                yield piece

    def _finish(self, raw: str, evidence: Evidence) -> tuple[str, list[int], GroundingReport]:
        text, cited = resolve_citations(raw.strip(), len(evidence.passages))
        report = GroundingChecker(reference_text(evidence)).check(text, self.grounding_mode)
        return report.text, cited, report

    async def backend(self) -> dict[str, Any]:
        """Return the generator's status (backend, model, degraded, reasons)."""
        generator = self.services.generator
        if generator is None:
            return {"backend": "none", "degraded": True, "reason": "no generator deployed"}
        return dict(await _maybe_await(_call(generator, "status")))

    # -- chat --------------------------------------------------------------------------

    async def chat(
        self, message: str, context: Mapping[str, Any] | None, session_id: str | None,
        principal: Principal,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield ``{"type": "token"}`` events, then one ``{"type": "done"}`` event."""
        started = time.perf_counter()
        context = dict(context or {})
        subject = principal.subject
        session_id = await self.sessions.open(session_id, subject)
        history = await self.sessions.history(session_id, subject)
        previous: list[str] = []
        for past in reversed(history):
            symbols = past.context.get("symbols")
            if isinstance(symbols, list) and symbols:
                previous = [str(s) for s in symbols]
                break
        gather_started = time.perf_counter()
        plan, evidence, sources, used = await self.gather(message, context, previous)
        messages = build_messages(evidence, [m.model_dump() for m in history])
        prompt_ready = time.perf_counter()
        first_token = 0.0
        pieces: list[str] = []
        async for piece in self._tokens(messages, evidence, self.max_new_tokens):
            if not pieces:
                first_token = time.perf_counter()
            pieces.append(piece)
            yield {"type": "token", "content": piece}
        generated = time.perf_counter()
        content, cited, report = self._finish("".join(pieces), evidence)
        user_message = ChatMessage(role="user", content=message,
                                   context={"symbols": list(plan.symbols), **_small(context)})
        reply = ChatMessage(role="assistant", content=content, context={
            "symbols": list(plan.symbols), "intent": plan.intent, "citations": cited,
            "grounding": report.to_dict(), "market": used,
            "timings": {  # seconds, for profiling: session, gather+prompt, first token, rest
                "session_s": round(gather_started - started, 4),
                "gather_s": round(prompt_ready - gather_started, 4),
                "first_token_s": round((first_token or generated) - prompt_ready, 4),
                "generate_s": round(generated - prompt_ready, 4),
                "pieces": len(pieces)},
        })
        await self.sessions.append(session_id, subject, user_message, reply)
        yield {"type": "done", "message": reply.model_dump(mode="json"), "sources": sources,
               "session_id": session_id}

    # -- analyze -----------------------------------------------------------------------

    async def analyze(self, symbol: str, query: str) -> dict[str, Any]:
        """Return CONTRACT §5's analysis: market, options summary, patterns, answer, sources."""
        market = self.services.market
        snapshot = await market.snapshot(symbol)  # NotFound for unknown symbols
        symbol = snapshot.symbol
        bars, summary = await asyncio.gather(
            market.bars(symbol, "1Min", 390), self._chain_summary(symbol))
        patterns, analysis = quant_analysis(bars)
        question = query.strip() or f"What is the current picture for {symbol}?"
        plan, evidence, sources, used = await self.gather(
            question, {"symbol": symbol}, (symbol,),
            analysis={symbol: _scalars(analysis)},
        )
        if symbol not in used:  # the question named other symbols only: add this one
            evidence.add_market(symbol, snapshot.model_dump(mode="json"), summary,
                                analysis=_scalars(analysis))
        messages = build_messages(evidence)
        raw = "".join([piece async for piece in self._tokens(messages, evidence,
                                                             self.max_new_tokens)])
        answer, cited, report = self._finish(raw, evidence)
        return {
            "symbol": symbol, "query": query, "market": snapshot.model_dump(mode="json"),
            "options": summary, "patterns": patterns, "analysis": analysis,
            "answer": answer, "sources": sources, "citations": cited,
            "grounding": report.to_dict(), "intent": plan.intent,
        }


def quant_analysis(bars: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the quant engine's pattern detection and price/volume summary over bars."""
    rows = list(getattr(bars, "bars", []) or [])
    if not rows:
        return [], {}
    columns = {name: np.asarray([float(getattr(bar, name)) for bar in rows], dtype=np.float64)
               for name in ("open", "high", "low", "close", "volume")}
    patterns: list[dict[str, Any]] = []
    analysis: dict[str, Any] = {}
    try:
        from market.patterns import detect_patterns

        patterns = _jsonable(detect_patterns(columns["open"], columns["high"], columns["low"],
                                             columns["close"], columns["volume"]))
    except ImportError as exc:
        log.info("pattern detection unavailable: %s", exc)
    try:
        from market.analysis import price_volume_summary

        timestamps_ns = np.asarray([int(bar.timestamp.timestamp() * 1e9) for bar in rows],
                                   dtype=np.int64)
        analysis = _jsonable(price_volume_summary(
            columns["open"], columns["high"], columns["low"], columns["close"], columns["volume"],
            timestamps_ns=timestamps_ns))
    except ImportError as exc:
        log.info("price/volume analysis unavailable: %s", exc)
    return patterns, analysis


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _scalars(analysis: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in analysis.items() if isinstance(v, int | float | str | Mapping)}


def _small(context: Mapping[str, Any]) -> dict[str, Any]:
    """Keep a client's context in history only when it is small and flat."""
    return {str(k): v for k, v in list(context.items())[:8]
            if isinstance(v, str | int | float | bool) and len(str(v)) <= 200}
