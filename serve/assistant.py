"""The research assistant: the analytics' figures → a composed answer, phrased under a gate.

One message goes through: recognise (symbols, topics, horizon: ``rag.answers.intents``)
→ gather (each symbol's MarketData, and the option-chain summary and bar analysis when
the question needs them; passages for document questions) → compose
(``rag.answers.compose``: the exact figures, what they mean, as-of time; document
quotes with page citations from ``rag.answers.documents``) → optionally let a capable
model phrase the composed facts, each sentence screened by ``rag.answers.gate`` before
it reaches the user → session history.

Whether a model phrases is ``Settings.answer_mode`` (``auto``: only an endpoint or a
configured local model, not the built-in 135M one). The answer's context says which
text the user got (``model``, ``model+composed``, ``composed``) and why.

:class:`Assistant` is a plain class over :class:`serve.deps.Services`; handles and plain
objects are both accepted for ``knowledge`` and ``generator`` so tests run it without Ray.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import MarketrayError, NotFound
from core.models import ChatMessage
from rag.answers.compose import Composed, compose
from rag.answers.documents import DocumentAnswer, extract_answer
from rag.answers.facts import SymbolData
from rag.answers.gate import GateDecision, SentenceGate
from rag.answers.intents import Ask, recognise
from rag.grounding import GroundingChecker, GroundingReport, resolve_citations
from rag.prompt import Evidence, phrase_messages
from rag.query import classify_intent
from rag.sessions import SessionStore
from serve.auth import Principal
from serve.bar_analysis import BARS_FOR_ANALYSIS, quant_analysis
from serve.deps import Services

log = logging.getLogger("marketray.assistant")

MAX_SYMBOLS = 3
MARKET_FIELDS = ("price", "volume", "timestamp", "change_percent", "bid", "ask", "indicators")
BARS_FOR_VOLUME = 390 * 6  # past sessions for volume against its usual level
DEFAULT_MODEL_MARK = "SmolLM2-135M"  # the built-in model: too small to phrase by default


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _call(target: Any, method: str, *args: Any) -> Any:
    """Call ``method`` on a Serve handle (``.remote``) or a plain object."""
    bound = getattr(target, method)
    remote = getattr(bound, "remote", None)
    return remote(*args) if remote is not None else bound(*args)


@dataclass
class Answer:
    """One answer: its text and everything behind it."""

    ask: Ask
    text: str
    decision: GateDecision
    composed: Composed
    data: dict[str, SymbolData]
    sources: list[dict[str, Any]] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)
    grounding: GroundingReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """Return what the response says about how the answer was made."""
        return {"answer": self.decision.to_dict(), "topics": list(self.ask.topics),
                "facts": self.composed.to_dict(), "timings": self.timings}


class Assistant:
    """Answers chat messages and builds /analyze results from services."""

    def __init__(
        self, services: Services, *, passages: int = 3, max_new_tokens: int = 160,
        history_messages: int = 20, answer_mode: str | None = None,
    ) -> None:
        self.services = services
        self.passages = passages
        self.max_new_tokens = max_new_tokens
        self.answer_mode = answer_mode or str(getattr(services.settings, "answer_mode", "auto"))
        self.sessions = SessionStore(services.cache, max_messages=history_messages)
        self._phrases: bool | None = None

    # -- gathering ---------------------------------------------------------------------

    async def _chain_summary(self, symbol: str) -> dict[str, Any]:
        try:
            summary = await self.services.market.chain_summary(symbol)
        except (MarketrayError, ImportError, ValueError, KeyError) as exc:
            log.info("no chain summary for %s: %s", symbol, exc)
            return {}
        return dict(summary or {})

    async def _bars(self, symbol: str, with_history: bool) -> tuple[list[Any], dict[str, Any]]:
        limit = BARS_FOR_VOLUME if with_history else BARS_FOR_ANALYSIS
        try:
            bars = await self.services.market.bars(symbol, "1Min", limit)
        except (MarketrayError, ValueError, KeyError) as exc:
            log.info("no bars for %s: %s", symbol, exc)
            return [], {}
        return quant_analysis(bars)

    async def symbol_data(self, symbol: str, *, options: bool, bars: bool,
                          volume_history: bool = False) -> SymbolData:
        """Return one symbol's snapshot, and its chain summary and bar analysis if asked."""
        snapshot = await self.services.market.snapshot(symbol)  # NotFound for unknown symbols
        chain = self._chain_summary(symbol) if options else _empty_dict()
        analysed = self._bars(symbol, volume_history) if bars else _empty_bars()
        summary, (patterns, analysis) = await asyncio.gather(chain, analysed)
        return SymbolData(snapshot.symbol, snapshot.model_dump(mode="json"), summary,
                          analysis, patterns)

    async def _retrieve(self, query: str, symbols: Sequence[str]) -> list[dict[str, Any]]:
        knowledge = self.services.knowledge
        if knowledge is None or self.passages <= 0:
            return []
        filters = {"ticker": symbols[0]} if len(symbols) == 1 else None
        try:
            results = await _maybe_await(_call(knowledge, "search", query, self.passages,
                                               filters))
            if not results and filters:
                results = await _maybe_await(_call(knowledge, "search", query, self.passages,
                                                   None))
        except Exception as exc:  # retrieval is optional: answer from market data alone
            log.warning("retrieval failed: %s", exc)
            return []
        return [dict(item) for item in (results or [])][:self.passages]

    # -- the model's place -------------------------------------------------------------

    async def backend(self) -> dict[str, Any]:
        """Return the generator's status (backend, model, degraded, reasons)."""
        generator = self.services.generator
        if generator is None:
            return {"backend": "none", "degraded": True, "reason": "no generator deployed"}
        return dict(await _maybe_await(_call(generator, "status")))

    async def phrases(self) -> bool:
        """Return True when a model phrases answers (``answer_mode``, see the module)."""
        if self.answer_mode == "composed" or self.services.generator is None:
            return False
        if self.answer_mode == "phrase":
            return True
        if self._phrases is None:
            try:
                status = await self.backend()
            except Exception as exc:  # an unknown backend does not phrase
                log.warning("generator status unavailable: %s", exc)
                return False
            model = str(status.get("model", ""))
            self._phrases = status.get("backend") == "openai" or (
                status.get("backend") == "local" and DEFAULT_MODEL_MARK not in model)
        return self._phrases

    async def _tokens(self, messages: list[dict[str, str]], evidence: Evidence
                      ) -> AsyncIterator[str]:
        generator = self.services.generator
        options = getattr(generator, "options", None)
        if options is not None and hasattr(generator, "deployment_name"):
            response = options(stream=True).stream.remote(messages, self.max_new_tokens,
                                                           evidence.to_dict())
            try:
                async for piece in response:
                    yield piece
            finally:
                cancel = getattr(response, "cancel", None)
                if cancel is not None:
                    cancel()
        else:
            stream = generator.stream(messages, self.max_new_tokens,  # type: ignore[union-attr]
                                      evidence.to_dict())
            try:
                async for piece in stream:
                    yield piece
            finally:
                await stream.aclose()

    # -- answering ---------------------------------------------------------------------

    async def respond(
        self, question: str, context: Mapping[str, Any] | None = None,
        previous: Sequence[str] = (), *, primary: SymbolData | None = None,
    ) -> AsyncIterator[str | Answer]:
        """Yield the answer's text pieces as they are ready, then the :class:`Answer`.

        ``primary`` is /analyze's symbol, already gathered: it comes first, and other
        symbols the question names are gathered alongside.
        """
        started = time.perf_counter()
        tracked = tuple(self.services.market.symbols)
        ask = recognise(question, tracked, context, previous)
        symbols = list(ask.symbols)
        if primary is not None:
            symbols = [primary.symbol, *(s for s in symbols if s != primary.symbol)]
        symbols = symbols[:MAX_SYMBOLS]
        ask = replace(ask, symbols=tuple(symbols), compare=ask.compare or (
            primary is not None and len(symbols) > 1))
        wants_documents = "documents" in ask.topics or not symbols
        gathered = await asyncio.gather(
            *(self._gather(symbol, ask, primary) for symbol in symbols),
            self._retrieve(_search_query(question, symbols),
                           [s for s in ask.named if s in symbols]) if wants_documents
            else _empty_list(), return_exceptions=True)
        data: dict[str, SymbolData] = {}
        for symbol, result in zip(symbols, gathered[:-1], strict=True):
            if isinstance(result, SymbolData):
                data[result.symbol] = result
            elif isinstance(result, NotFound):
                continue
            elif isinstance(result, BaseException):
                log.warning("market data for %s unavailable: %s", symbol, result)
        sources = gathered[-1] if isinstance(gathered[-1], list) else []
        ask = replace(ask, symbols=tuple(data))
        composed = compose(ask, list(data.values()))
        documents = extract_answer(question, sources) if wants_documents else DocumentAnswer()
        gathered_at = time.perf_counter()
        first_piece = 0.0
        marks: dict[str, float] = {}  # when the model's first token came
        if composed.statements and await self.phrases():
            gate = SentenceGate(composed, ask.topics, ask.symbols, question,
                                [str(s.get("text", "")) for s in sources])
            pieces: list[str] = []
            async for piece in self._phrase(question, composed, sources, gate, marks):
                first_piece = first_piece or time.perf_counter()
                pieces.append(piece)
                yield piece
            text, decision = "".join(pieces).strip(), gate.decision
            if documents.quotes and not re.search(r"\[\d+\]", text):
                extra = f" {documents.text()}"
                decision.filled.append("documents")
                yield extra
                text += extra
        else:
            text = composed.text
            decision = GateDecision("composed", [f"answer_mode {self.answer_mode}: the model "
                                                 "does not phrase answers"])
            if documents.quotes:
                text = f"{text} {documents.text()}".strip()
            if not text:
                text = ("I found no market data or document passage that answers this; name "
                        "a tracked symbol (" + ", ".join(tracked[:8]) + ") or a filing.")
            for index, word in enumerate(text.split(" ")):
                first_piece = first_piece or time.perf_counter()
                yield word if index == 0 else f" {word}"
        text, cited = resolve_citations(text, len(sources))
        reference = "\n".join([composed.text, *(str(s.get("text", "")) for s in sources),
                               question])
        grounding = GroundingChecker(reference).check(text, "report")
        done = time.perf_counter()
        yield Answer(ask, text, decision, composed, data, sources, cited, grounding, {
            "gather_s": round(gathered_at - started, 4),
            "first_piece_s": round((first_piece or done) - started, 4),
            **({"model_first_token_s": round(marks["first_token"] - started, 4)}
               if "first_token" in marks else {}),
            "total_s": round(done - started, 4)})

    async def _gather(self, symbol: str, ask: Ask, primary: SymbolData | None) -> SymbolData:
        if primary is not None and symbol == primary.symbol:
            return primary
        return await self.symbol_data(symbol, options=ask.needs_options(),
                                      bars=ask.needs_bars(),
                                      volume_history="volume" in ask.topics)

    async def _phrase(self, question: str, composed: Composed, sources: list[dict[str, Any]],
                      gate: SentenceGate, marks: dict[str, float]) -> AsyncIterator[str]:
        """Yield the model's accepted sentences, then the composed fills (sets gate.decision)."""
        evidence = Evidence(question=question, intent="general")
        evidence.market.append({"symbol": "", "as_of": "", "options": [], "analysis": [],
                                "facts": [[str(i + 1), s.text]
                                          for i, s in enumerate(composed.statements)]})
        evidence.add_passages(sources)
        messages = phrase_messages(question, [s.text for s in composed.statements], evidence)
        written = 0
        tokens = self._tokens(messages, evidence)
        try:
            async for piece in tokens:
                marks.setdefault("first_token", time.perf_counter())
                for sentence in gate.feed(piece):
                    yield sentence if written == 0 else f" {sentence}"
                    written += 1
                if gate.stopped:
                    break
        except MarketrayError as exc:
            gate.reasons.append(f"model_failed: {exc.code}")
        finally:
            await tokens.aclose()
        rest, _ = gate.finish()
        for sentence in rest:
            yield sentence if written == 0 else f" {sentence}"
            written += 1

    # -- chat --------------------------------------------------------------------------

    async def chat(
        self, message: str, context: Mapping[str, Any] | None, session_id: str | None,
        principal: Principal,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield ``{"type": "token"}`` events, then one ``{"type": "done"}`` event."""
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
        answer: Answer | None = None
        async for item in self.respond(message, context, previous):
            if isinstance(item, Answer):
                answer = item
            else:
                yield {"type": "token", "content": item}
        assert answer is not None  # respond() always ends with the Answer
        symbols = list(answer.ask.symbols)
        user_message = ChatMessage(role="user", content=message,
                                   context={"symbols": symbols, **_small(context)})
        reply = ChatMessage(role="assistant", content=answer.text, context={
            "symbols": symbols, "intent": classify_intent(message),
            "citations": answer.citations,
            "grounding": answer.grounding.to_dict() if answer.grounding else {},
            "market": {s: {k: d.market.get(k) for k in MARKET_FIELDS}
                       for s, d in answer.data.items()},
            "data": {s: _compact(d) for s, d in answer.data.items()},
            **answer.context()})
        await self.sessions.append(session_id, subject, user_message, reply)
        yield {"type": "done", "message": reply.model_dump(mode="json"),
               "sources": answer.sources, "session_id": session_id}

    # -- analyze -----------------------------------------------------------------------

    async def analyze(self, symbol: str, query: str) -> dict[str, Any]:
        """Return CONTRACT §5's analysis: market, options summary, patterns, answer, sources."""
        question = query.strip() or f"What is the current picture for {symbol}?"
        volume = "volume" in recognise(question, (symbol,)).topics
        primary = await self.symbol_data(symbol, options=True, bars=True,
                                         volume_history=volume)
        answer: Answer | None = None
        async for item in self.respond(question, {"symbol": primary.symbol}, (),
                                       primary=primary):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None  # respond() always ends with the Answer
        others = {s: _compact(d) for s, d in answer.data.items() if s != primary.symbol}
        return {
            "symbol": primary.symbol, "query": query, "market": dict(primary.market),
            "options": dict(primary.options), "patterns": list(primary.patterns),
            "analysis": dict(primary.analysis), "answer": answer.text,
            "sources": answer.sources, "citations": answer.citations,
            "grounding": answer.grounding.to_dict() if answer.grounding else {},
            "intent": classify_intent(question),
            "context": {**answer.context(), "symbols": list(answer.ask.symbols),
                        "data": others},
        }


async def _empty_dict() -> dict[str, Any]:
    return {}


async def _empty_list() -> list[dict[str, Any]]:
    return []


async def _empty_bars() -> tuple[list[Any], dict[str, Any]]:
    return [], {}


def _search_query(question: str, symbols: Sequence[str]) -> str:
    named = [s for s in symbols if s not in question.upper()]
    return f"{' '.join(named)} {question}".strip()


def _compact(data: SymbolData) -> dict[str, Any]:
    """One symbol's structured data without the per-strike arrays (for context/history)."""
    options = {k: v for k, v in data.options.items() if k != "exposure"}
    exposure = data.options.get("exposure")
    if isinstance(exposure, Mapping):
        options["exposure"] = {k: v for k, v in exposure.items() if k != "by_strike"}
    return {"market": dict(data.market), "options": options, "analysis": dict(data.analysis),
            "patterns": list(data.patterns)[:5]}


def _small(context: Mapping[str, Any]) -> dict[str, Any]:
    """Keep a client's context in history only when it is small and flat."""
    return {str(k): v for k, v in list(context.items())[:8]
            if isinstance(v, str | int | float | bool) and len(str(v)) <= 200}
