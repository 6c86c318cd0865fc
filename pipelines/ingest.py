"""Ray Data PDF ingestion: parse → chunk → embed (actor pool) → publish an index version.

    python -m pipelines.ingest PATH... [--address RAY_ADDRESS] [--data-dir DIR]
    ray job submit --working-dir . -- python -m pipelines.ingest PATH... --data-dir /abs/data

(Under ``ray job submit`` the working directory is a copy: give ``--data-dir`` as an
absolute path on the head node, and PDF paths the driver can read.)

Graph::

    files ──screen (driver: size, content hash, duplicates; largest first)──▶ from_items
      └─ map_batches(ParseDocuments)   pypdf text, cleaning, metadata, token-aware chunks;
           └─ extract_page_range tasks  a large document's other page ranges, in parallel
      └─ repartition(64 rows/block)    streaming, so the embedding pool shares a big document
      └─ map_batches(EmbedChunks)      pool of embedding actors, GPU when the cluster has one
      └─ driver: chunks + vectors (in input order) → Parquet version in <data_dir>/index

Where the time goes (``bench/bench_ingest.py`` splits it): MiniLM embedding takes most
of the CPU, pypdf extraction the rest, and one 10-K can hold most of a run's pages. So
the largest files start first, a large document's pages are extracted by several
workers at once (the embedding actors would otherwise wait for its last page), and each
CPU embedding actor runs one torch thread with small model batches (8 rows embed more
chunks per CPU-second than 64 on one thread; single-thread actors also avoid torch's
spin-waiting threads on a busy host).

Bad documents become one ``skipped`` row with a reason and never reach the index.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from core.settings import Settings
from rag.documents import CHUNK_COLUMNS, process_document, rows_to_columns
from rag.embedder import Embedder, load_token_counter
from rag.index import IndexStore, table_with_vectors
from rag.ingestion import IngestSummary, discover_pdfs, screen_files
from rag.pdf import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES, BadDocument, page_range_texts, page_texts

logger = logging.getLogger(__name__)

STATUS_COLUMNS = ("status", "reason", "document")
EMBED_BATCH = 64  # rows per block handed to an embedding actor
CPU_MODEL_BATCH = 8  # texts per forward pass on a single-thread CPU actor
GPU_MODEL_BATCH = 64
MIN_PAGES_PER_PART = 24  # below this a document's pages are extracted by its parse actor alone
EXTRACT_TASK_CPUS = 0.25  # logical share; the work is pypdf in one process


@ray.remote
def extract_page_range(data: bytes, start: int, stop: int) -> list[str]:
    """Return the text of pages ``start`` to ``stop`` of an already screened PDF."""
    return page_range_texts(data, start, stop)


def _empty_row(uri: str, status: str, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CHUNK_COLUMNS, "")
    row.update(ordinal=0, page=0, fiscal_year=0, uri=uri, status=status, reason=reason,
               document="")
    return row


class ParseDocuments:
    """Ray Data step: PDF paths in, one row per chunk out (or one ``skipped`` row)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_pages: int = DEFAULT_MAX_PAGES,
                 parts: int = 1):
        self.count_tokens = load_token_counter()
        self.max_bytes = max_bytes
        self.max_pages = max_pages
        self.parts = parts

    def read_pages(self, reader: Any, data: bytes) -> list[str]:
        """Return every page's text; a large document's page ranges go to parallel tasks."""
        count = len(reader.pages)
        parts = min(self.parts, count // MIN_PAGES_PER_PART)
        if parts < 2:
            return page_texts(reader)
        bounds = [round(count * i / parts) for i in range(parts + 1)]
        ranges = list(zip(bounds[1:-1], bounds[2:], strict=True))
        shared = ray.put(data)
        futures = [extract_page_range.options(num_cpus=EXTRACT_TASK_CPUS).remote(shared, a, b)
                   for a, b in ranges]
        texts = page_texts(reader, 0, bounds[1])
        try:
            parts_texts = ray.get(futures)
        except ray.exceptions.RayError as exc:  # a lost worker: read those pages here
            logger.warning("parallel page extraction failed (%s); reading locally", exc)
            parts_texts = [page_texts(reader, a, b) for a, b in ranges]
        for part in parts_texts:
            texts.extend(part)
        return texts

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows: list[dict[str, Any]] = []
        for path in batch["path"]:
            uri = Path(str(path)).name
            try:
                document = process_document(
                    Path(str(path)).read_bytes(), uri, self.count_tokens,
                    max_bytes=self.max_bytes, max_pages=self.max_pages,
                    read_pages=self.read_pages,
                )
            except BadDocument as exc:
                rows.append(_empty_row(uri, "skipped", exc.reason))
                continue
            except OSError as exc:
                rows.append(_empty_row(uri, "skipped", f"unreadable: {exc}"))
                continue
            chunk_rows = document.rows()
            if not chunk_rows:
                rows.append(_empty_row(uri, "skipped", "no text chunks"))
                continue
            record = json.dumps(document.record())
            for i, row in enumerate(chunk_rows):
                row.update(status="ok", reason="", document=record if i == 0 else "")
            rows.extend(chunk_rows)
        columns = rows_to_columns(rows)
        for name in STATUS_COLUMNS:
            columns[name] = [row[name] for row in rows]
        return columns


class EmbedChunks:
    """Ray Data step: chunk rows in, the same rows plus a 384-float ``vector`` column out."""

    def __init__(self, threads: int | None = None, batch_size: int = CPU_MODEL_BATCH,
                 dtype: str = "auto") -> None:
        self.embedder = Embedder.minilm(dtype, batch_size=batch_size, threads=threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        status = batch.column("status").to_pylist()
        texts = batch.column("embed_text").to_pylist()
        live = [i for i, s in enumerate(status) if s == "ok"]
        vectors = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        if live:
            vectors[live] = self.embedder.encode([texts[i] for i in live])
        return table_with_vectors(batch, vectors)


def _ray_init(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)  # a cluster, e.g. under `ray job submit`
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def build_dataset(
    files: Sequence[Path], *, embed_actors: int | None = None, embed_batch: int = EMBED_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES, max_pages: int = DEFAULT_MAX_PAGES,
    embed_dtype: str = "auto",
) -> ray.data.Dataset:
    """Return the lazy dataset of embedded chunk rows for ``files`` (Ray must be running).

    Files are parsed largest first, so the longest extraction does not start last.
    """
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    ordered = sorted(files, key=_size, reverse=True)
    ds = ray.data.from_items([{"path": str(p)} for p in ordered],
                             override_num_blocks=max(1, len(files)))
    parse_actors = max(1, min(len(files), cpus))
    ds = ds.map_batches(ParseDocuments, fn_constructor_kwargs={
                            "max_bytes": max_bytes, "max_pages": max_pages, "parts": cpus},
                        batch_size=1, concurrency=parse_actors, num_cpus=0.25)
    # One document's chunks arrive as one block; cut them into embedding-sized blocks so
    # every actor of the pool gets work instead of one actor embedding a whole 10-K.
    ds = ds.repartition(target_num_rows_per_block=embed_batch)
    if gpus:
        actors, options = embed_actors or gpus, {"num_gpus": 1, "num_cpus": 1}
        threads, model_batch = None, GPU_MODEL_BATCH
    else:
        actors = embed_actors or cpus
        # Logical shares only (threads are set explicitly): leave one CPU free so the
        # repartition tasks between the two pools can always be scheduled.
        free = cpus - 0.25 * parse_actors - 1.0
        options = {"num_cpus": max(0.1, free / actors)}
        threads = max(1, cpus // actors)
        model_batch = CPU_MODEL_BATCH if threads == 1 else EMBED_BATCH
    return ds.map_batches(
        EmbedChunks, fn_constructor_kwargs={"threads": threads, "batch_size": model_batch,
                                            "dtype": embed_dtype},
        batch_size=embed_batch, batch_format="pyarrow", concurrency=actors, **options,
    )


def ingest(
    paths: Iterable[str | Path], settings: Settings, address: str | None = None,
    *, embed_actors: int | None = None, publish: bool = True,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> dict[str, Any]:
    """Run the pipeline over ``paths`` (files or folders) and publish one new index version.

    Returns the summary: documents, pages, chunks, skipped files with reasons,
    duplicates (same content hash as an indexed or earlier file), seconds, version.
    """
    started = time.perf_counter()
    store = IndexStore(settings.storage("index"),
                       cache_dir=Path(settings.data_dir).resolve() / "cache" / "index")
    max_bytes = settings.max_upload_mb * 1024 * 1024 * 4  # batch files may exceed uploads
    known = {d["content_hash"] for d in store.documents()}
    files, summary = screen_files(discover_pdfs(paths), known, max_bytes)
    if files:
        _ray_init(address)
        ds = build_dataset(files, embed_actors=embed_actors, embed_dtype=settings.embed_dtype,
                           max_bytes=max_bytes, max_pages=max_pages)
        tables = [b for b in ds.iter_batches(batch_format="pyarrow", batch_size=None) if len(b)]
        table = pa.concat_tables(tables) if tables else pa.table({})
        parsed = _collect(_in_input_order(table, files), summary, store if publish else None)
        _report_lost(files, parsed, summary)
    summary.version = summary.version or store.current_version()
    summary.seconds = time.perf_counter() - started
    return summary.as_dict()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _in_input_order(table: pa.Table, files: Sequence[Path]) -> pa.Table:
    """Return the rows ordered by input file, then chunk ordinal (the sequential layout)."""
    if len(table) == 0:
        return table
    rank = {p.name: i for i, p in enumerate(files)}
    file_rank = np.fromiter((rank.get(u, len(rank)) for u in table.column("uri").to_pylist()),
                            np.int64, len(table))
    ordinal = table.column("ordinal").to_numpy()
    return table.take(pa.array(np.lexsort((ordinal, file_rank))))


def _report_lost(files: Sequence[Path], parsed: set[str], summary: IngestSummary) -> None:
    """Record files the pipeline returned no row for (a worker lost for good) as skipped."""
    seen = parsed | {Path(item["uri"]).name for item in summary.skipped}
    for path in files:
        if path.name not in seen:
            summary.skipped.append({"uri": str(path), "reason": "no result from the pipeline"})


def _collect(table: pa.Table, summary: IngestSummary, store: IndexStore | None) -> set[str]:
    """Fill ``summary`` from the pipeline's rows, publish them; return the parsed files' uris."""
    if len(table) == 0:
        return set()
    status = table.column("status").to_pylist()
    for row in table.filter(pa.array([s == "skipped" for s in status])).to_pylist():
        summary.skipped.append({"uri": row["uri"], "reason": row["reason"]})
    chunks = table.filter(pa.array([s == "ok" for s in status]))
    records = [json.loads(d) for d in chunks.column("document").to_pylist() if d]
    if not records:
        return set()
    parsed = {r["uri"] for r in records}
    chunks = chunks.drop_columns(list(STATUS_COLUMNS))
    if store is not None:
        summary.version, duplicate_ids = store.add(chunks, records)
        summary.duplicates.extend(r["uri"] for r in records if r["document_id"] in duplicate_ids)
        records = [r for r in records if r["document_id"] not in duplicate_ids]
    summary.documents = len(records)
    summary.document_ids = [r["document_id"] for r in records]
    summary.pages = sum(r["pages"] for r in records)
    summary.chunks = sum(r["chunks"] for r in records)
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run :func:`ingest`, print the summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="PDF files or folders of PDFs")
    parser.add_argument("--address", default=None, help="Ray address (default: local)")
    parser.add_argument("--data-dir", default=None,
                        help="override MARKETRAY_DATA_DIR (a path or s3://, gs://, file:// URI)")
    parser.add_argument("--embed-actors", type=int, default=None)
    args = parser.parse_args(argv)
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = Settings(**overrides)
    summary = ingest(args.paths, settings, address=args.address, embed_actors=args.embed_actors)
    print(json.dumps(summary, indent=2))
    for item in summary["skipped"]:
        print(f"skipped {item['uri']}: {item['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
