"""Model deployments: a batched sentence embedder and a streaming text generator.

Both are thin: :class:`GeneratorService` (plain class, no Ray) owns a
:class:`rag.generation.Generator` and bridges its blocking token iterator to an async
one; the Serve deployments hold one each. Both use a GPU when the replica was given one
(``ray_actor_options={"num_gpus": ...}``, set by ``serve.app.build_app``) and the CPU
otherwise.

Bind signatures (``payload = settings.model_dump(mode="json")``)::

    Embedder.options(ray_actor_options={"num_gpus": g}).bind(payload)
    Generator.options(ray_actor_options={"num_gpus": g}).bind(payload)
    # optional keyword overrides: Generator.bind(payload, model="none" | "/path", url=...)

Calls through handles::

    vectors = await embedder.embed.remote(["text", ...])        # np.ndarray (n, 384) float32
    async for piece in generator.options(stream=True).stream.remote(messages, 256, evidence):
        ...
    status = await generator.status.remote()                      # dict for /health
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from actors import telemetry
from core.errors import Unavailable
from core.settings import Settings
from rag.generation import Generator as TextGenerator
from rag.generation import LoadReport, load_generator
from serve.observability.collectors import GeneratorMetrics
from serve.observability.logs import event

log = logging.getLogger("marketray.models")
_END = object()


class GeneratorService:
    """Streams tokens from a loaded generator without blocking the event loop.

    At most ``max_concurrent`` generations are in flight at once (the rest wait their
    turn); a local model decodes up to ``max_batch`` of them as one batched forward per
    step (``rag.batching``; 0 = one ``generate`` per request). A consumer that stops
    iterating stops its generation.
    """

    def __init__(
        self, settings: Settings, *, model: str | None = None, url: str | None = None,
        max_concurrent: int = 4, num_threads: int | None = None, max_batch: int = 0,
        generator: TextGenerator | None = None,
    ) -> None:
        if generator is not None:
            self.generator = generator
            self.report = LoadReport(generator.name, generator.describe())
        else:
            self.generator, self.report = load_generator(
                settings, model=model, url=url, num_threads=num_threads, max_batch=max_batch)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent,
                                            thread_name_prefix="generate")
        self.active = 0

    def status(self) -> dict[str, Any]:
        """Return which backend is loaded, why others were skipped, and current load."""
        status = {**self.report.to_dict(), "active": self.active}
        scheduler_load = getattr(self.generator, "scheduler_load", None)
        if scheduler_load is not None:
            status["scheduler"] = scheduler_load()
        return status

    def close(self) -> None:
        """Stop the generator's threads (a local model's batch scheduler) and the pool."""
        close = getattr(self.generator, "close", None)
        if close is not None:
            close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def stream(
        self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 256,
        evidence: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Yield text pieces as the generator produces them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        msgs = [dict(m) for m in messages]

        def hand_over(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                stop.set()

        def produce() -> None:
            try:
                for piece in self.generator.stream(msgs, max_new_tokens, evidence=evidence,
                                                   stop=stop):
                    hand_over(piece)
                    if stop.is_set():
                        break
            except Exception as exc:  # handed to the consumer
                hand_over(exc)
            finally:
                hand_over(_END)

        async with self._slots:
            self.active += 1
            future = loop.run_in_executor(self._executor, produce)
            try:
                while True:
                    item = await queue.get()
                    if item is _END:
                        break
                    if isinstance(item, Exception):
                        log.warning("generation failed: %s", item)
                        raise Unavailable(f"text generation failed: {type(item).__name__}")
                    yield str(item)
            finally:
                stop.set()
                self.active -= 1
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(future), 30)

    async def generate(
        self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 256,
        evidence: Mapping[str, Any] | None = None,
    ) -> str:
        """Return the whole answer at once."""
        return "".join([piece async for piece in self.stream(messages, max_new_tokens, evidence)])


@serve.deployment(max_ongoing_requests=64, health_check_period_s=30)
class Generator:
    """Streaming text generation: local HF model, OpenAI-compatible endpoint or extractive.

    A local model batches concurrent requests step by step (``max_batch`` rows); an
    endpoint or the extractive generator streams each request on its own.

    On CPU the model runs ``num_threads`` torch threads (default: the settings'
    ``llm_threads``, 0 = every core but one). The replica shares its cores with the feed, the
    shards and the other replicas, where spinning OpenMP threads made a prefill several
    times slower, so :func:`build_app` starts this replica with ``OMP_WAIT_POLICY=PASSIVE``
    (``bench/bench_chat.py``; docs/performance.md).
    """

    def __init__(
        self, settings: dict[str, Any], model: str | None = None, url: str | None = None,
        max_concurrent: int = 32, max_batch: int = 8, num_threads: int | None = None,
    ) -> None:
        config = Settings(**settings)
        self.service = GeneratorService(
            config, model=model, url=url, max_concurrent=max_concurrent,
            # On CPU the model's own threads set this count (rag.torch_threads): Ray
            # starts this replica with OMP_NUM_THREADS=1 for its fractional CPU.
            num_threads=None if _gpu_visible() else (
                num_threads or config.llm_threads or max(1, (os.cpu_count() or 1) - 1)),
            max_batch=max_batch,
        )
        self.metrics = GeneratorMetrics(self.service, telemetry.recorder())
        telemetry.on_flush(self.metrics)
        report = self.service.report
        event(log, "model.loaded", backend=report.backend, degraded=report.degraded,
              skipped=list(report.skipped))

    async def stream(
        self, messages: list[dict[str, str]], max_new_tokens: int = 256,
        evidence: dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Yield text pieces (call with ``handle.options(stream=True)``)."""
        started, pieces = time.perf_counter(), 0
        self.metrics.in_progress += 1
        try:
            async for piece in self.service.stream(messages, max_new_tokens, evidence):
                if not pieces:
                    self.metrics.first_token(time.perf_counter() - started)
                pieces += 1
                yield piece
        finally:
            self.metrics.in_progress -= 1
            self.metrics.tokens(pieces)

    async def generate(
        self, messages: list[dict[str, str]], max_new_tokens: int = 256,
        evidence: dict[str, Any] | None = None,
    ) -> str:
        """Return the whole answer."""
        return "".join([piece async for piece in self.stream(messages, max_new_tokens,
                                                             evidence)])

    async def status(self) -> dict[str, Any]:
        """Backend, model, device, skipped backends with reasons; ``degraded`` if extractive."""
        return {**self.service.status(),
                "queued": max(0, self.metrics.in_progress - self.service.active)}


def _gpu_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class EmbedderService:
    """Encodes texts with all-MiniLM-L6-v2 (``rag.embedder``); plain class, no Ray.

    On CPU the model runs ``num_threads`` torch threads (default: every core), on the
    thread that encodes (Ray starts the replica with ``OMP_NUM_THREADS`` = its CPUs).
    """

    def __init__(self, *, batch_size: int = 64, num_threads: int | None = None,
                 dtype: str = "auto") -> None:
        from rag.embedder import Embedder as TextEmbedder
        from rag.embedder import default_device

        self.device = default_device()
        threads = (num_threads or os.cpu_count() or 1) if self.device == "cpu" else None
        self.embedder = TextEmbedder.minilm(dtype, batch_size=batch_size, threads=threads)
        self.dimension = self.embedder.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), 384)`` float32 unit vectors."""
        return self.embedder.encode(list(texts))


@serve.deployment(max_ongoing_requests=256)
class Embedder:
    """Sentence embeddings; concurrent calls are merged into one model batch."""

    def __init__(self, settings: dict[str, Any], batch_size: int = 64,
                 num_threads: int | None = None) -> None:
        self.service = EmbedderService(batch_size=batch_size, num_threads=num_threads,
                                       dtype=Settings(**settings).embed_dtype)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, requests: list[list[str]]) -> list[np.ndarray]:
        sizes = [len(texts) for texts in requests]
        flat = [text for texts in requests for text in texts]
        vectors = await asyncio.to_thread(self.service.encode, flat)
        parts: list[np.ndarray] = []
        start = 0
        for size in sizes:
            parts.append(vectors[start:start + size])
            start += size
        return parts

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Return ``(len(texts), 384)`` float32 unit vectors (batched with other callers)."""
        return await self._embed_batch(list(texts))

    async def __call__(self, texts: list[str]) -> np.ndarray:
        """Same as :meth:`embed`."""
        return await self.embed(texts)

    async def status(self) -> dict[str, Any]:
        """Device and dimension for ``/health``."""
        return {"backend": "torch (rag.minilm)", "model": "all-MiniLM-L6-v2",
                "device": self.service.device, "dtype": self.service.embedder.dtype,
                "dimension": self.service.dimension}
