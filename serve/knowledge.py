"""Knowledge base deployment: hybrid search over the published index, document uploads.

:class:`KnowledgeService` is the plain class (no Ray): it owns the index store, the
current snapshot with its retriever, the query embedder and the upload registry, and
follows the ``CURRENT`` pointer so versions published by ``marketray ingest`` (or by a
replica on another node) appear without a restart. The index and the uploads live in
the shared data directory (``Settings.storage``): every replica lists the same upload
records (``uploads/<id>.json``), and an upload's PDF (``uploads/<id>.pdf``) stays there
until it is indexed, so a replica that starts later finishes uploads left pending by one
that died. :class:`KnowledgeBase` is the thin Serve deployment around it; it
merges concurrent queries into one embedding batch with ``@serve.batch``.

    KnowledgeBase.bind(settings.model_dump(mode="json"))
    await handle.search.remote("put-call parity", 5, {"doc_type": "10-K"})  # list[Source dict]
    await handle.add_document.remote("report.pdf", data)   # {"document_id", "status", ...}
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.exceptions import RayServeException

from actors import telemetry
from core.errors import InvalidInput, PayloadTooLarge, Unavailable
from core.settings import Settings
from rag.embedder import Embedder
from rag.index import IndexStore
from rag.ingestion import ingest_document, ingest_files
from rag.pdf import BadDocument, content_hash, document_id_for
from rag.retrieval import HybridRetriever
from serve.observability import build_hooks
from serve.observability.collectors import KnowledgeMetrics

log = logging.getLogger("marketray.knowledge")
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "rag" / "samples"
POLL_INTERVAL_S = 1.0
UPLOADS = "uploads"
# A pending upload untouched this long was left by a replica that died: a starting one
# ingests it. Finished records are dropped after a day (the index lists indexed ones).
STALE_PENDING_S = 600.0
FINISHED_RECORD_TTL_S = 86_400.0


class KnowledgeService:
    """Search, list, upload and delete documents over one data dir's index; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        embedder_factory: Callable[[], Embedder] | None = None,
        *,
        samples_dir: Path | None = SAMPLES_DIR,
        torch_threads: int | None = 1,
    ) -> None:
        self.settings = settings
        self.store = IndexStore(settings.storage("index"),
                                cache_dir=Path(settings.data_dir).resolve() / "cache" / "index")
        self.uploads = settings.storage(UPLOADS)
        # One short query gains nothing from intra-op threads, and on a busy host their
        # spin-waits multiply its latency (docs/performance.md, embeddings and search).
        self.embedder = (embedder_factory or partial(
            Embedder.minilm, settings.embed_dtype, threads=torch_threads))()
        self.samples_dir = samples_dir
        self._retriever = HybridRetriever(self.store.load(), self.embedder.encode_query)
        self._lock = threading.Lock()
        self._records_cache: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.ready = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Ingest the bundled samples into an empty index, then follow new versions."""
        try:
            if self.store.current_version() is None and self.samples_dir is not None:
                samples = sorted(self.samples_dir.glob("*.pdf"))
                if samples:
                    summary = ingest_files(samples, self.store, self.embedder)
                    log.info("ingested %d bundled sample documents", summary.documents)
            self.refresh()
            self._resume_stale_uploads()
        finally:
            self.ready = True

    def _resume_stale_uploads(self) -> None:
        """Ingest uploads left pending by a replica that stopped before finishing them."""
        for record in self._records(fresh=True):
            if record["status"] != "pending" or \
                    time.time() - record.get("updated", 0.0) < STALE_PENDING_S:
                continue
            try:
                data = self.uploads.read_bytes(f"{record['document_id']}.pdf")
            except FileNotFoundError:
                data = b""
            if data:
                log.info("resuming upload %s left pending", record["document_id"])
                self.process(record["document_id"], record.get("uri") or "upload.pdf", data)
            else:
                self._save({**record, "status": "failed", "reason": "upload data lost"})

    def start_polling(self, interval_s: float = POLL_INTERVAL_S) -> None:
        """Poll ``CURRENT`` in a daemon thread and load newer versions as they appear."""
        if self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # keep serving the version already loaded
                    log.exception("index reload failed")

        self._poller = threading.Thread(target=loop, name="index-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop the poller."""
        self._stop.set()

    def refresh(self) -> bool:
        """Load the published version if it differs from the one in memory; True if swapped."""
        with self._refresh_lock:
            version = self.store.current_version()
            if version == self._retriever.snapshot.version:
                return False
            retriever = HybridRetriever(self.store.load(version), self.embedder.encode_query)
            self._retriever = retriever  # one reference swap: searches never see a mix
            log.info("serving index version %s (%d chunks)", version, len(retriever.snapshot),
                     extra={"event": "index.loaded", "version": version,
                            "chunks": len(retriever.snapshot)})
            return True

    # -- search ----------------------------------------------------------------------------
    def embed_queries(self, queries: list[str]) -> np.ndarray:
        """Return one unit vector per query, embedded as one batch."""
        return self.embedder.encode(queries)

    def search(
        self, query: str, k: int = 5, filters: dict[str, Any] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Return up to ``k`` passages as ``Source`` dicts, best first."""
        if not 1 <= k <= 50:
            raise InvalidInput("k must be between 1 and 50")
        retriever = self._retriever
        results = retriever.search(query, k, filters, query_vector=query_vector)
        return [source.model_dump() for source in results]

    # -- documents -------------------------------------------------------------------------
    def list_documents(self) -> list[dict[str, Any]]:
        """Return indexed documents (status ``indexed``) and uploads still pending or failed."""
        indexed = [
            {**{k: v for k, v in d.items() if k not in ("aliases", "content_hash")},
             "status": "indexed", "reason": None}
            for d in self._retriever.snapshot.documents
        ]
        known = {d["document_id"] for d in indexed}
        others = [_public(u) for u in self._records()
                  if u["document_id"] not in known and u["status"] != "indexed"]
        return indexed + others

    # -- upload records (shared by every replica) --------------------------------------------
    def _records(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """Return every upload record; cached for a poll interval (``/health`` reads it)."""
        with self._lock:
            read_at, records = self._records_cache
            if not fresh and time.monotonic() - read_at < POLL_INTERVAL_S:
                return records
        records = []
        for name in self.uploads.listdir():
            if not name.endswith(".json"):
                continue
            try:
                records.append(json.loads(self.uploads.read_text(name)))
            except (FileNotFoundError, ValueError):  # deleted meanwhile, or not ours
                continue
        with self._lock:
            self._records_cache = (time.monotonic(), records)
        return records

    def _record(self, document_id: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self.uploads.read_text(f"{document_id}.json"))
        except FileNotFoundError:
            return None
        return record

    def _save(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "updated": time.time()}
        self.uploads.write_text(f"{record['document_id']}.json", json.dumps(record))
        with self._lock:
            self._records_cache = (0.0, [])
        return _public(record)

    def _drop_old_records(self) -> None:
        for record in self._records(fresh=True):
            if record["status"] != "pending" and \
                    time.time() - record.get("updated", 0.0) > FINISHED_RECORD_TTL_S:
                self.uploads.delete(f"{record['document_id']}.json")

    def submit(self, filename: str, data: bytes) -> dict[str, Any]:
        """Check an upload and register it as ``pending`` (or ``duplicate``); no parsing yet."""
        limit = self.settings.max_upload_mb * 1024 * 1024
        if len(data) > limit:
            raise PayloadTooLarge(f"upload exceeds {self.settings.max_upload_mb} MB")
        name = Path(filename or "upload.pdf").name
        if not data.lstrip()[:5].startswith(b"%PDF"):
            raise InvalidInput("only PDF documents can be uploaded")
        digest = content_hash(data)
        document_id = document_id_for(digest)
        record = {"document_id": document_id, "uri": name, "title": name,
                  "status": "pending", "reason": None}
        in_index = any(d["content_hash"] == digest for d in self._retriever.snapshot.documents)
        previous = self._record(document_id)
        if in_index or (previous and previous["status"] in ("pending", "indexed")):
            return {**record, "status": "duplicate",
                    "reason": "a document with the same content is already indexed"}
        self._drop_old_records()
        self.uploads.write_bytes(f"{document_id}.pdf", data)
        return self._save(record)

    def process(self, document_id: str, filename: str, data: bytes) -> dict[str, Any]:
        """Parse, embed and index a submitted upload; record ``indexed`` or ``failed``."""
        update: dict[str, Any]
        try:
            document, _, duplicate = ingest_document(data, Path(filename).name, self.store,
                                                     self.embedder)
            update = {"status": "duplicate" if duplicate else "indexed", "reason": None,
                      "title": document.metadata.title, "pages": document.page_count,
                      "chunks": len(document.chunks)}
        except BadDocument as exc:
            update = {"status": "failed", "reason": exc.reason}
        except Exception as exc:  # reported through GET /documents, never raised to a route
            log.exception("ingesting %s failed", filename)
            update = {"status": "failed", "reason": f"internal error: {type(exc).__name__}"}
        self.refresh()
        record = self._record(document_id) or {"document_id": document_id}
        saved = self._save({**record, **update})
        self.uploads.delete(f"{document_id}.pdf")
        return saved

    def delete(self, document_id: str) -> bool:
        """Remove a document from the index (new version) or a failed upload; False if unknown."""
        version = self.store.delete(document_id)
        dropped = self._record(document_id)
        if dropped is not None:
            self.uploads.delete(f"{document_id}.json")
            self.uploads.delete(f"{document_id}.pdf")
            with self._lock:
                self._records_cache = (0.0, [])
        if version is not None:
            self.refresh()
            return True
        return dropped is not None and dropped.get("status") != "pending"

    def status(self) -> dict[str, Any]:
        """Return index version, document and chunk counts and readiness for ``/health``."""
        snapshot = self._retriever.snapshot
        pending = sum(1 for u in self._records() if u["status"] == "pending")
        return {"ready": self.ready, "version": snapshot.version,
                "documents": len(snapshot.documents), "chunks": len(snapshot),
                "pending_uploads": pending, "degraded": not self.ready}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """Return an upload record without its bookkeeping fields."""
    return {k: v for k, v in record.items() if k != "updated"}


def _in_replica() -> bool:
    try:
        serve.get_replica_context()
    except RayServeException:
        return False
    return True


@serve.deployment(max_ongoing_requests=128, ray_actor_options={"num_cpus": 1})
class KnowledgeBase:
    """Serve deployment around :class:`KnowledgeService` (settings passed as a plain dict)."""

    def __init__(
        self, settings: dict[str, Any], embedder_factory: Callable[[], Embedder] | None = None,
        query_embedder: Any = None,
    ) -> None:
        self.service = KnowledgeService(Settings(**settings), embedder_factory)
        # Handle to serve.models.Embedder: query embeddings go there, batched across all
        # callers and on a GPU when the cluster has one; the local model stays for ingestion
        # and as the fallback when that deployment cannot answer.
        self.query_embedder = query_embedder
        self._tasks: set[asyncio.Task[Any]] = set()
        self._batched = _in_replica()  # @serve.batch needs a replica; tests build the class bare
        self.metrics = KnowledgeMetrics(self.service, telemetry.recorder(),
                                        build_hooks(self.service.settings, kind="knowledge"))
        telemetry.on_flush(self.metrics)
        self._starting = threading.Thread(target=self._start, name="kb-start", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        self.service.start()
        self.service.start_polling()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _embed(self, queries: list[str]) -> list[np.ndarray]:
        vectors = await asyncio.to_thread(self.service.embed_queries, queries)
        return list(vectors)

    async def search(self, query: str, k: int = 5,
                     filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Return up to ``k`` Source dicts; query embeddings are batched across callers."""
        if not self.service.ready and self.service.status()["chunks"] == 0:
            raise Unavailable("the knowledge base is still loading")
        if not query.strip():
            raise InvalidInput("query must not be empty")
        started = time.perf_counter()
        vector = await self._embed_query(query)
        found = self.service.search(query, k, filters, query_vector=vector)
        self.metrics.searched(time.perf_counter() - started)
        return found

    async def _embed_query(self, query: str) -> np.ndarray:
        if self.query_embedder is not None:
            try:
                vectors = await self.query_embedder.embed.remote([query])
                return np.asarray(vectors, dtype=np.float32)[0]
            except Exception as exc:  # the local model answers while the deployment is away
                log.warning("embedding deployment failed (%s); embedding locally",
                             type(exc).__name__)
        if self._batched:
            vector: np.ndarray = await self._embed(query)
            return vector
        vectors = await asyncio.to_thread(self.service.embed_queries, [query])
        return np.asarray(vectors[0])

    async def list_documents(self) -> list[dict[str, Any]]:
        """Return indexed documents and the status of recent uploads."""
        return self.service.list_documents()

    async def add_document(self, filename: str, data: bytes) -> dict[str, Any]:
        """Register an upload and ingest it in the background; returns its status record."""
        record = self.service.submit(filename, data)
        if record["status"] == "pending":
            task = asyncio.create_task(asyncio.to_thread(
                self.service.process, record["document_id"], filename, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._count_ingest)
        else:
            self.metrics.ingested(record)
        return record

    def _count_ingest(self, task: asyncio.Task[dict[str, Any]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.metrics.ingested(task.result())

    async def delete_document(self, document_id: str) -> bool:
        """Remove a document; False when it is unknown."""
        return await asyncio.to_thread(self.service.delete, document_id)

    async def status(self) -> dict[str, Any]:
        """Index version, documents, chunks, readiness."""
        return self.service.status()

    def __del__(self) -> None:
        self.service.stop()
