"""Versioned vector store: chunks + vectors in Parquet, a FAISS index, atomic publishing.

Layout under ``root`` (``<data_dir>/index``: a path, a shared volume or an object store,
see :mod:`core.storage`)::

    CURRENT                 name of the published version (replaced whole)
    versions/v000007/       chunks.parquet (with a ``vector`` column), index.faiss,
                            documents.json, lexical/ (BM25 term counts of ``embed_text``)
    .lock                   writers on a filesystem hold an flock while they read-modify-publish

A version directory is complete before ``CURRENT`` names it, so readers never see a
half-written index; a reader on any node that can reach ``root`` follows ``CURRENT``.
On an object store a version is downloaded once per node into ``cache_dir`` (FAISS and
the memory-mapped term counts need real files); there, writers are serialised only
within one process, so run one writer (``marketray ingest`` or the uploads of one
knowledge replica) at a time. Its term counts (``rag.lexical.TermCounts``) let a reader build BM25
without tokenising; ``add`` tokenises only the new chunks and ``delete`` drops rows.
Versions written before the counts existed still load (BM25 then tokenises).
Collections up to ``hnsw_threshold`` chunks use an exact inner product index; larger
ones an HNSW graph.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.storage import Storage
from rag.embedder import Vectors
from rag.lexical import InvalidTermCounts, TermCounts

log = logging.getLogger(__name__)

DEFAULT_HNSW_THRESHOLD = 50_000
DEFAULT_KEEP_VERSIONS = 3
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 96
EXACT_SUBSET_LIMIT = 60_000
MAX_SLICED_RUNS = 256  # above this many runs of consecutive rows, gather them first
_VERSION = re.compile(r"^v(\d{6,})$")
LEXICAL_DIR = "lexical"
LEXICAL_COLUMN = "embed_text"
# Writers to one object-store index within this process (there is no flock there).
_REMOTE_LOCKS: dict[str, threading.Lock] = {}
_REMOTE_LOCKS_GUARD = threading.Lock()


def build_faiss_index(vectors: Vectors, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> Any:
    """Return an inner-product FAISS index: exact when small, HNSW above ``hnsw_threshold``."""
    dimension = vectors.shape[1]
    index: Any
    if len(vectors) > hnsw_threshold:
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


@dataclass
class IndexSnapshot:
    """One published version held in memory: chunk table, vectors, FAISS index, documents.

    ``term_counts`` are the saved BM25 counts of ``embed_text`` (memory-mapped), ``None``
    when the version has none that fit its chunks.
    """

    version: str | None
    chunks: pa.Table
    vectors: Vectors
    documents: list[dict[str, Any]]
    faiss_index: Any
    term_counts: TermCounts | None = None
    _columns: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls, dimension: int = 384) -> IndexSnapshot:
        """Return a snapshot with no documents."""
        vectors = np.zeros((0, dimension), dtype=np.float32)
        return cls(None, pa.table({}), vectors, [], build_faiss_index(vectors))

    def __len__(self) -> int:
        return len(self.vectors)

    def column(self, name: str) -> Any:
        """Return a chunk column as a numpy array (cached)."""
        if name not in self._columns:
            self._columns[name] = self.chunks.column(name).to_numpy(zero_copy_only=False)
        return self._columns[name]

    def dense_search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        candidates: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Return (scores, chunk rows) of the ``k`` nearest chunks, best first.

        ``candidates`` restricts the search to those rows; small subsets are searched
        exactly with numpy, large ones through FAISS with over-fetch and filtering.
        """
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        total = len(self)
        if total == 0 or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if candidates is not None and len(candidates) <= EXACT_SUBSET_LIMIT:
            if len(candidates) == 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            scores = _subset_scores(self.vectors, candidates, query[0])
            top = _top_k(scores, k)
            return scores[top], candidates[top]
        fetch = min(total, k if candidates is None else k * 20)
        scores, rows = self.faiss_index.search(query, fetch)
        scores, rows = scores[0], rows[0].astype(np.int64)
        keep = rows >= 0
        if candidates is not None:
            keep &= np.isin(rows, candidates)
        return scores[keep][:k], rows[keep][:k]


def _subset_scores(
    vectors: Vectors, rows: npt.NDArray[np.int64], query: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Return ``vectors[rows] @ query``; runs of consecutive rows are read in place.

    A filter usually selects whole documents, whose chunks are stored next to each
    other: multiplying those slices directly skips copying the selected vectors first,
    the larger share of a filtered search's time (``bench/bench_search.py``).
    """
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    if len(breaks) + 1 > MAX_SLICED_RUNS:
        scores: npt.NDArray[np.float32] = vectors[rows] @ query
        return scores
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(rows)]))
    return np.concatenate([vectors[rows[a]: rows[b - 1] + 1] @ query
                           for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])


def _lexical_texts(table: pa.Table) -> list[str] | None:
    """Return the text BM25 indexes (``embed_text``, nulls as ""), ``None`` without it."""
    if LEXICAL_COLUMN not in table.column_names:
        return None
    return ["" if text is None else str(text) for text in table.column(LEXICAL_COLUMN).to_pylist()]


def _top_k(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    part = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)


def vectors_from_table(table: pa.Table) -> Vectors:
    """Return the ``vector`` column of a chunk table as an ``(n, d)`` float32 array."""
    column = table.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 384), dtype=np.float32)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        width = len(column[0].as_py())
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(len(column), width), dtype=np.float32)


def table_with_vectors(columns: dict[str, Sequence[Any]] | pa.Table, vectors: Vectors) -> pa.Table:
    """Return a chunk table with ``vectors`` attached as a fixed-size ``vector`` column."""
    table = columns if isinstance(columns, pa.Table) else pa.table(dict(columns))
    if "vector" in table.column_names:
        table = table.drop_columns(["vector"])
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return table.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))


class IndexStore:
    """Read and publish index versions under ``root``; safe for one writer at a time per host.

    ``root`` is a path or a :class:`core.storage.Storage`; ``cache_dir`` is where versions
    of an object-store index are downloaded on this node (default: a directory under the
    system's temporary directory, one per index location).
    """

    def __init__(
        self,
        root: Path | str | Storage,
        *,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
        keep_versions: int = DEFAULT_KEEP_VERSIONS,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.storage = root if isinstance(root, Storage) else Storage(root)
        self.hnsw_threshold = hnsw_threshold
        self.keep_versions = max(1, keep_versions)
        key = hashlib.sha1(self.storage.location.encode()).hexdigest()[:12]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(
            tempfile.gettempdir()) / "marketray-index-cache" / key
        self.storage.makedirs("versions")

    @property
    def location(self) -> str:
        """Return where the index lives (a path or URI)."""
        return self.storage.location

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the store's exclusive write lock for a read-modify-publish.

        An ``flock`` on a filesystem (other processes and, on NFS, other nodes wait); on an
        object store a lock of this process only.
        """
        if not self.storage.is_local:
            with _REMOTE_LOCKS_GUARD:
                lock = _REMOTE_LOCKS.setdefault(self.storage.location, threading.Lock())
            with lock:
                yield
            return
        with open(self.storage.local_path(".lock"), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def current_version(self) -> str | None:
        """Return the published version's name, or ``None`` before the first publish."""
        try:
            name = self.storage.read_text("CURRENT").strip()
        except FileNotFoundError:
            return None
        return name or None

    def _folder(self, version: str) -> Path:
        """Return a local directory holding ``version`` (downloaded once off a local disk)."""
        folder = self.storage.local_copy(f"versions/{version}", self.cache_dir / version)
        if not self.storage.is_local:
            self._prune_cache(keep=version)
        return folder

    def _prune_cache(self, keep: str) -> None:
        """Drop downloaded versions the store no longer keeps (open mmaps stay valid)."""
        kept = set(self._versions()) | {keep}
        for folder in self.cache_dir.iterdir():
            if _VERSION.match(folder.name) and folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    def load(self, version: str | None = None) -> IndexSnapshot:
        """Return the named (default: current) version in memory; empty when none exists."""
        version = version or self.current_version()
        if version is None:
            return IndexSnapshot.empty()
        folder = self._folder(version)
        table = pq.read_table(folder / "chunks.parquet")
        vectors = vectors_from_table(table)
        documents = json.loads((folder / "documents.json").read_text())
        index_path = folder / "index.faiss"
        faiss_index = faiss.read_index(str(index_path)) if index_path.exists() else None
        if faiss_index is None or faiss_index.ntotal != len(vectors):
            faiss_index = build_faiss_index(vectors, self.hnsw_threshold)
        if isinstance(faiss_index, faiss.IndexHNSW):
            faiss_index.hnsw.efSearch = HNSW_EF_SEARCH
        chunks = table.drop_columns(["vector"])
        term_counts = self._saved_term_counts(folder, len(table))
        return IndexSnapshot(version, chunks, vectors, documents, faiss_index, term_counts)

    def publish(
        self, table: pa.Table, documents: list[dict[str, Any]],
        term_counts: TermCounts | None = None,
    ) -> str:
        """Write ``table`` (with vectors) and ``documents`` as a new version and make it current.

        ``term_counts`` are the table's BM25 counts when the caller has them; otherwise
        they are computed here from its ``embed_text`` column (none without that column).
        Call under :meth:`writer_lock` when other writers may run.
        """
        vectors = vectors_from_table(table) if len(table) else np.zeros((0, 384), np.float32)
        if term_counts is None:
            texts = _lexical_texts(table)
            term_counts = None if texts is None else TermCounts.from_texts(texts)
        if term_counts is not None and term_counts.rows != len(table):
            raise ValueError(f"term counts of {term_counts.rows} rows for {len(table)} chunks")
        staging = self.storage.staging_dir()
        try:
            pq.write_table(table, staging / "chunks.parquet")
            faiss.write_index(build_faiss_index(vectors, self.hnsw_threshold),
                              str(staging / "index.faiss"))
            (staging / "documents.json").write_text(json.dumps(documents, indent=1))
            if term_counts is not None:
                term_counts.save(staging / LEXICAL_DIR)
            version = self._next_version()
            self.storage.put_dir(staging, f"versions/{version}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed
        self.storage.write_text("CURRENT", version)
        self._prune(version)
        return version

    def add(self, table: pa.Table, documents: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
        """Append new documents' chunks and publish; return (version, ids skipped as duplicates).

        A document whose content hash is already indexed is skipped; when nothing is
        new, no version is published and the current one is returned.
        """
        with self.writer_lock():
            version, current, catalogue = self._read_current()
            known = {d["content_hash"] for d in catalogue}
            fresh = [d for d in documents if d["content_hash"] not in known]
            duplicates = [d["document_id"] for d in documents if d["content_hash"] in known]
            if not fresh:
                return version, duplicates
            fresh_ids = pa.array([d["document_id"] for d in fresh])
            if len(table):
                table = table.filter(pc.is_in(table.column("document_id"), fresh_ids))
            merged = pa.concat_tables([current, table], promote_options="default") \
                if current is not None else table
            # Append the new chunks' counts to the current ones; publish() counts a first
            # version itself.
            counts = None
            new_texts = _lexical_texts(table)
            if current is not None and new_texts is not None \
                    and LEXICAL_COLUMN in current.column_names:
                counts = self._term_counts_of(version, current).append(new_texts)
            return self.publish(merged, catalogue + fresh, counts), duplicates

    def delete(self, document_id: str) -> str | None:
        """Remove one document and publish; return the new version, ``None`` if unknown."""
        with self.writer_lock():
            version, table, documents = self._read_current()
            if not any(d["document_id"] == document_id for d in documents):
                return None
            remaining = [d for d in documents if d["document_id"] != document_id]
            counts = None
            if table is not None:
                keep = pc.fill_null(pc.not_equal(table.column("document_id"), document_id), False)
                if LEXICAL_COLUMN in table.column_names:
                    rows = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
                    counts = self._term_counts_of(version, table).take(rows)
                table = table.filter(keep)
            else:
                table = pa.table({})
            return self.publish(table, remaining, counts)

    def documents(self) -> list[dict[str, Any]]:
        """Return the current version's document catalogue."""
        version = self.current_version()
        if version is None:
            return []
        return list(json.loads(self.storage.read_text(f"versions/{version}/documents.json")))

    def _read_current(self) -> tuple[str | None, pa.Table | None, list[dict[str, Any]]]:
        version = self.current_version()
        if version is None:
            return None, None, []
        folder = f"versions/{version}"
        with self.storage.open_input(f"{folder}/chunks.parquet") as source:
            table = pq.read_table(source)
        return version, table, json.loads(self.storage.read_text(f"{folder}/documents.json"))

    def _saved_term_counts(self, folder: Path, rows: int) -> TermCounts | None:
        """Return the version's saved term counts, or ``None`` (logged) when unusable."""
        if not (folder / LEXICAL_DIR).exists():
            if rows:
                log.info("index version %s has no saved term counts (written before they "
                         "were saved): BM25 will tokenise its %d chunks", folder.name, rows)
            return None
        try:
            return TermCounts.load(folder / LEXICAL_DIR, rows)
        except InvalidTermCounts as exc:
            log.warning("ignoring the term counts of index version %s (%s): BM25 will "
                        "tokenise its %d chunks", folder.name, exc, rows)
            return None

    def _term_counts_of(self, version: str | None, table: pa.Table) -> TermCounts:
        """Return the saved counts of ``version`` (its chunks are ``table``), else tokenise."""
        saved = None
        if version is not None:
            saved = self._saved_term_counts(self._folder(version), len(table))
        return saved if saved is not None else TermCounts.from_texts(_lexical_texts(table) or [])

    def _versions(self) -> list[str]:
        names = [name for name in self.storage.listdir("versions") if _VERSION.match(name)]
        return sorted(names, key=lambda n: int(n[1:]))

    def _next_version(self) -> str:
        existing = self._versions()
        number = int(existing[-1][1:]) + 1 if existing else 1
        return f"v{number:06d}"

    def _prune(self, current: str) -> None:
        for name in self._versions()[: -self.keep_versions]:
            if name != current:
                self.storage.delete_dir(f"versions/{name}")
