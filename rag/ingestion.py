"""Ingest PDFs in one process: the plain loop behind uploads, samples and the baseline.

The Ray Data pipeline (``pipelines.ingest``) runs the same per-document steps spread
over workers; this module is the sequential reference and the path for single uploads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from rag.documents import ProcessedDocument, process_document, rows_to_columns
from rag.embedder import Embedder
from rag.index import IndexStore, table_with_vectors
from rag.pdf import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES, BadDocument, check_size, content_hash


@dataclass
class IngestSummary:
    """What a run did: counts, skipped files with reasons, duplicates, time, version."""

    documents: int = 0
    pages: int = 0
    chunks: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    document_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values, with pages per second."""
        rate = self.pages / self.seconds if self.seconds > 0 else 0.0
        return {
            "documents": self.documents, "pages": self.pages, "chunks": self.chunks,
            "skipped": self.skipped, "duplicates": self.duplicates,
            "document_ids": self.document_ids, "seconds": round(self.seconds, 3),
            "pages_per_s": round(rate, 2), "version": self.version,
        }


def discover_pdfs(paths: Iterable[str | Path]) -> list[Path]:
    """Return the files named, with folders expanded to the ``*.pdf`` files inside them."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() == ".pdf"))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def screen_files(
    files: Iterable[Path], known_hashes: set[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Path], IngestSummary]:
    """Return the files worth parsing; the summary lists the missing, huge and duplicate ones."""
    summary = IngestSummary()
    seen = set(known_hashes)
    keep: list[Path] = []
    for path in files:
        try:
            check_size(path.stat().st_size, max_bytes)
            digest = content_hash(path.read_bytes())
        except FileNotFoundError:
            summary.skipped.append({"uri": str(path), "reason": "file not found"})
            continue
        except BadDocument as exc:
            summary.skipped.append({"uri": str(path), "reason": exc.reason})
            continue
        if digest in seen:
            summary.duplicates.append(str(path))
            continue
        seen.add(digest)
        keep.append(path)
    return keep, summary


def embed_documents(documents: list[ProcessedDocument], embedder: Embedder) -> pa.Table:
    """Return one chunk table (with vectors) for ``documents``."""
    rows = [row for document in documents for row in document.rows()]
    columns = rows_to_columns(rows)
    vectors = embedder.encode(columns["embed_text"])
    return table_with_vectors(columns, vectors)


def ingest_files(
    paths: Iterable[str | Path],
    store: IndexStore,
    embedder: Embedder,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> IngestSummary:
    """Parse, embed and index each file in turn, then publish one new version."""
    started = time.perf_counter()
    known = {d["content_hash"] for d in store.documents()}
    files, summary = screen_files(discover_pdfs(paths), known, max_bytes)
    processed: list[ProcessedDocument] = []
    tables: list[pa.Table] = []
    for path in files:
        try:
            document = process_document(path.read_bytes(), path.name, embedder.count_tokens,
                                        max_bytes=max_bytes, max_pages=max_pages)
        except BadDocument as exc:
            summary.skipped.append({"uri": str(path), "reason": exc.reason})
            continue
        if not document.chunks:
            summary.skipped.append({"uri": str(path), "reason": "no text chunks"})
            continue
        processed.append(document)
        tables.append(embed_documents([document], embedder))
    if processed:
        table = pa.concat_tables(tables)
        summary.version, duplicate_ids = store.add(table, [d.record() for d in processed])
        processed = [d for d in processed if d.document_id not in duplicate_ids]
    summary.documents = len(processed)
    summary.document_ids = [d.document_id for d in processed]
    summary.pages = sum(d.page_count for d in processed)
    summary.chunks = sum(len(d.chunks) for d in processed)
    summary.version = summary.version or store.current_version()
    summary.seconds = time.perf_counter() - started
    return summary


def ingest_document(
    data: bytes,
    uri: str,
    store: IndexStore,
    embedder: Embedder,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> tuple[ProcessedDocument, str | None, bool]:
    """Parse, embed and index one document; return (document, version, was_duplicate).

    Raises ``rag.pdf.BadDocument`` when the bytes cannot be indexed.
    """
    document = process_document(data, uri, embedder.count_tokens,
                                max_bytes=max_bytes, max_pages=max_pages)
    if not document.chunks:
        raise BadDocument("no text chunks")
    version, duplicates = store.add(embed_documents([document], embedder), [document.record()])
    return document, version, document.document_id in duplicates
