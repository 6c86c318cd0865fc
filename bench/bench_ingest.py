"""Ingestion throughput: the Ray Data pipeline vs a plain sequential loop, same run.

Both do the same work on the same PDFs — pypdf extraction, cleaning, metadata,
token-aware chunking, MiniLM embedding — and write an index. The baseline is
``rag.ingestion.ingest_files`` in this process (torch on all cores by default, one
document after another); the figure is ``pipelines.ingest.ingest`` on a local Ray cluster
(largest files first, a large document's page ranges extracted in parallel, parse actors
overlapping a pool of single-threaded embedding actors). Model loading is outside the
baseline's clock; the pipeline's clock includes starting its actors (Ray itself is
started first). Prints one JSON object: pages/s for both and their ratio (target >= 1.7).

The default corpus is every filing in finbench-dev (903 pages); ``--docs`` picks some.
The loop's time is split into embedding (torch, on all its threads) and the rest (pypdf
extraction, cleaning, chunking, index write: one core). A pipeline can spread the rest
over the cores, and the embedding over the cores the loop's torch threads left idle, so
``bound_ratio`` = loop / (rest / cores + embedding * threads / cores) is the ratio a
pipeline with no overhead at all would reach against this loop, same run.

On a busy 2-core host torch's two intra-op threads can be slower than one; run with
``--baseline-threads 1`` to see the ratio against that stricter baseline.

    python bench/bench_ingest.py [--pdfs DIR] [--docs AMCOR_2023_10K,...] [--baseline-threads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

FINBENCH = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "finbench-dev" / "pdfs"
QUICK_DOCS = ("AMCOR_2023_10K,BESTBUY_2024Q2_10Q,MGMRESORTS_2022Q4_EARNINGS,"
              "ULTABEAUTY_2023Q4_EARNINGS")  # 210 pages, for a shorter run


def synthetic_pdfs(folder: Path, documents: int = 12, pages: int = 15) -> list[Path]:
    """Write ``documents`` text PDFs of ``pages`` pages each (when no corpus is at hand)."""
    from fpdf import FPDF

    words = [
        "revenue", "margin", "segment", "guidance", "liquidity", "dividend", "inventory",
        "customers", "backlog", "impairment", "restructuring", "operating", "income", "tax",
        "rate", "cash", "flow", "capital",
    ]
    paths = []
    for d in range(documents):
        pdf = FPDF()
        pdf.set_font("Helvetica", "", 10)
        for p in range(pages):
            pdf.add_page()
            body = " ".join(words[(d * 7 + p * 3 + i) % len(words)] for i in range(420))
            pdf.multi_cell(0, 5, f"Company {d} report page {p}. {body}")
        path = folder / f"synthetic_{d:02d}.pdf"
        pdf.output(str(path))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pdfs", type=Path, default=None)
    parser.add_argument("--docs", default="",
                        help=f"file stems from --pdfs/finbench (default: all; e.g. {QUICK_DOCS})")
    parser.add_argument("--embed-actors", type=int, default=None)
    parser.add_argument("--baseline-threads", type=int, default=None,
                        help="torch threads of the sequential loop (default: torch's, all cores)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray

    from core.settings import Settings
    from pipelines.ingest import ingest
    from rag.embedder import Embedder
    from rag.index import IndexStore
    from rag.ingestion import ingest_files

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        source = args.pdfs or (FINBENCH if FINBENCH.is_dir() else None)
        if source is None:
            files = synthetic_pdfs(work)
            corpus = "synthetic"
        else:
            stems = [s for s in args.docs.split(",") if s]
            files = [source / f"{s}.pdf" for s in stems] if stems else sorted(source.glob("*.pdf"))
            corpus = str(source)

        import torch

        if args.baseline_threads:
            torch.set_num_threads(args.baseline_threads)
        baseline_threads = torch.get_num_threads()
        embedder = Embedder()  # model load is not part of the baseline's clock
        encode, embed_s = embedder.encode, 0.0

        def timed_encode(texts: Any) -> Any:
            nonlocal embed_s
            began = time.perf_counter()
            try:
                return encode(texts)
            finally:
                embed_s += time.perf_counter() - began

        embedder.encode = timed_encode  # type: ignore[method-assign]
        started = time.perf_counter()
        baseline = ingest_files(files, IndexStore(work / "seq" / "index"), embedder)
        baseline_s = time.perf_counter() - started
        del embedder

        ray.init(include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()
        summary = ingest(files, Settings(data_dir=work / "ray"), embed_actors=args.embed_actors)
        pipeline_s = time.perf_counter() - started
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    pages = summary["pages"]
    assert pages == baseline.pages, "runs disagree on pages"
    assert summary["chunks"] == baseline.chunks, "runs disagree on chunks"
    figure = pages / pipeline_s
    reference = baseline.pages / baseline_s
    cores = os.cpu_count() or 1
    spread = min(baseline_threads, cores) / cores
    bound = baseline_s / ((baseline_s - embed_s) / cores + embed_s * spread)
    emit({
        "benchmark": "ingest_pages_per_s",
        "corpus": corpus, "documents": summary["documents"], "pages": pages,
        "chunks": summary["chunks"],
        "figure": round(figure, 2), "figure_seconds": round(pipeline_s, 1),
        "baseline": round(reference, 2), "baseline_seconds": round(baseline_s, 1),
        "baseline_name": "sequential loop (rag.ingestion.ingest_files), same steps, same run",
        "baseline_torch_threads": baseline_threads,
        "baseline_embedding_seconds": round(embed_s, 1),
        "baseline_other_seconds": round(baseline_s - embed_s, 1),
        "ratio": round(figure / reference, 3), "target_ratio": 1.7,
        "bound_ratio": round(bound, 3),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
    })


if __name__ == "__main__":
    main()
