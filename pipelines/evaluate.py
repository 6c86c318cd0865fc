"""Measure retrieval: evidence-page hit@1/5/10 and document hit@5, dense vs BM25 vs fused.

    python -m pipelines.evaluate --pdfs DIR --questions FILE.jsonl [--data-dir DIR]

All PDFs go through the Ray Data pipeline into one shared index (reused when
``--data-dir`` already holds one with them). Each JSONL line needs ``question``,
``doc_name`` (the PDF's file stem) and ``evidence``: ``[{"evidence_page_num": 0-based}]``.
Prints one JSON object; ``with_query_metadata`` is the product's retrieval, ``plain`` the
same retrievers without reading company/period from the question.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.settings import Settings
from pipelines.ingest import ingest
from rag.embedder import Embedder
from rag.index import IndexStore
from rag.retrieval import HybridRetriever, Mode, RetrievalConfig

MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")


def load_questions(path: Path) -> list[dict[str, Any]]:
    """Return the JSONL questions with their 0-based evidence pages as a set."""
    questions = []
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            item["pages"] = {int(e["evidence_page_num"]) for e in item.get("evidence", [])}
            questions.append(item)
    return questions


def score(
    retriever: HybridRetriever, questions: list[dict[str, Any]], vectors: Any,
    doc_ids: dict[str, str], mode: Mode,
) -> dict[str, float]:
    """Return hit@1/5/10 on evidence pages and hit@5 on documents for one mode."""
    hits = {"page_hit@1": 0, "page_hit@5": 0, "page_hit@10": 0, "doc_hit@5": 0}
    for question, vector in zip(questions, vectors, strict=True):
        results = retriever.search(question["question"], 10, mode=mode, query_vector=vector)
        wanted = doc_ids.get(question["doc_name"])
        ranks = [i for i, s in enumerate(results)
                 if s.document_id == wanted and s.page - 1 in question["pages"]]
        first = ranks[0] if ranks else None
        for k in (1, 5, 10):
            hits[f"page_hit@{k}"] += int(first is not None and first < k)
        hits["doc_hit@5"] += int(any(s.document_id == wanted for s in results[:5]))
    return {name: round(value / max(1, len(questions)), 4) for name, value in hits.items()}


def evaluate(
    pdfs: Path, questions_path: Path, data_dir: Path, address: str | None = None,
    config: RetrievalConfig | None = None,
) -> dict[str, Any]:
    """Ingest ``pdfs`` into ``data_dir`` and return the figures for every mode."""
    started = time.perf_counter()
    settings = Settings(data_dir=data_dir)
    summary = ingest([pdfs], settings, address=address)
    questions = load_questions(questions_path)
    snapshot = IndexStore(data_dir / "index").load()
    doc_ids = {Path(d["uri"]).stem: d["document_id"] for d in snapshot.documents}
    embedder = Embedder.minilm(settings.embed_dtype)
    vectors = embedder.encode([q["question"] for q in questions])
    config = config or RetrievalConfig()
    report: dict[str, Any] = {
        "questions": len(questions), "documents": len(snapshot.documents),
        "chunks": len(snapshot), "ingest": {k: summary[k] for k in
                                            ("documents", "pages", "chunks", "seconds")},
    }
    for label, use_metadata in (("with_query_metadata", True), ("plain", False)):
        variant = replace(config, use_query_metadata=use_metadata)
        retriever = HybridRetriever(snapshot, embedder.encode_query, variant)
        report[label] = {m: score(retriever, questions, vectors, doc_ids, m) for m in MODES}
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run :func:`evaluate`, print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="index location (default: a temporary folder)")
    parser.add_argument("--address", default=None)
    args = parser.parse_args(argv)
    if args.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="marketray-eval-") as tmp:
            report = evaluate(args.pdfs, args.questions, Path(tmp), args.address)
    else:
        report = evaluate(args.pdfs, args.questions, args.data_dir, args.address)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
