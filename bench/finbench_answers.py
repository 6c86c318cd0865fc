"""FinanceBench (finbench-dev): does the answer contain the gold figure? Extractive vs model.

Each of the 26 questions retrieves the 3 best pages of its own filing by BM25
(:class:`_PageSearch`; ``--embedded`` ingests the filings into an index under
``index_dir`` instead and uses the knowledge service's hybrid search over all of them).
The extractive answer quotes the best sentences or table rows
(:func:`rag.answers.documents.extract_answer`); the generative one is the built-in model
answering from the same passages with the assistant's document prompt. A question is a
hit when a figure of the answer shows a figure of the gold answer (years left out) at the
precision either writes it. Many gold answers are computed (ratios, changes): no quote
holds them, so the extractive share is bounded by the questions whose figure is printed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

FINBENCH = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "finbench-dev"


def _figures(text: str) -> list[Any]:
    from rag.grounding import extract_figures

    # Years and small counts ("(1)" footnotes, "2 stores") are no evidence of a figure.
    return [f for f in extract_figures(text) if not math.isnan(f.value)
            and not (f.decimals == 0 and not f.percent and 1990 <= f.value <= 2035)
            and not (f.decimals == 0 and f.scale == 1.0 and abs(f.value) < 10)]


def hit(answer: str, gold: str) -> bool:
    """True when a figure of ``answer`` shows a gold figure (either's precision)."""
    from rag.grounding import figure_matches

    golds = _figures(gold)
    for figure in _figures(answer):
        for g in golds:
            if figure_matches(figure, g.value * g.scale) or figure_matches(
                    g, figure.value * figure.scale):
                return True
    return False


def _service(index_dir: Path) -> Any:
    from core.settings import Settings
    from rag.index import IndexStore
    from rag.ingestion import ingest_files
    from serve.knowledge import KnowledgeService

    settings = Settings(secret_key="bench-secret-0123456789abcdef-0123", data_dir=index_dir)
    service = KnowledgeService(settings, samples_dir=None, torch_threads=None)
    store = IndexStore(index_dir / "index")
    if store.current_version() is None:
        ingest_files(sorted((FINBENCH / "pdfs").glob("*.pdf")), store, service.embedder)
    service.refresh()
    return service


class _PageSearch:
    """BM25 over each filing's pages (pypdf text, line breaks kept), within one filing.

    No embedding: on a busy host embedding the 903 pages takes longer than the rest of
    the benchmark. The search is restricted to the question's own filing, which the
    data set names, so both answerers see the same, relevant pages.
    """

    def __init__(self, cache: Path) -> None:
        from rag.lexical import BM25Index

        cache.mkdir(parents=True, exist_ok=True)
        pages_file = cache / "pages.json"
        if pages_file.exists():
            self.pages = json.loads(pages_file.read_text())
        else:
            from pypdf import PdfReader

            from rag.pdf import page_texts

            self.pages = {path.stem: page_texts(PdfReader(str(path)))
                          for path in sorted((FINBENCH / "pdfs").glob("*.pdf"))}
            pages_file.write_text(json.dumps(self.pages))
        self.indexes = {doc: BM25Index(texts) for doc, texts in self.pages.items()}

    def search(self, query: str, k: int, doc: str) -> list[dict[str, Any]]:
        _, rows = self.indexes[doc].search(query, k)
        return [{"document_id": doc, "title": doc, "uri": f"{doc}.pdf", "page": int(r) + 1,
                 "score": 0.0, "text": self.pages[doc][int(r)]} for r in rows]


def finbench(index_dir: Path, *, with_model: bool = False, k: int = 3,
             lexical: bool = True, model_limit: int = 26) -> dict[str, Any]:
    """Return the gold-figure share of extractive (and model) answers on finbench-dev."""
    if not (FINBENCH / "questions.jsonl").exists():
        return {"skipped": f"{FINBENCH} not found"}
    from rag.answers.documents import extract_answer

    started = time.perf_counter()
    pages = _PageSearch(index_dir) if lexical else None
    service = None if lexical else _service(index_dir)
    index_s = time.perf_counter() - started
    items = [json.loads(line) for line in (FINBENCH / "questions.jsonl").read_text()
             .splitlines() if line.strip()]
    generator = None
    if with_model:
        from core.settings import Settings
        from rag.generation import load_generator

        generator, _ = load_generator(Settings(secret_key="bench-secret-0123456789abcdef-0123"))
    extractive_hits, model_hits, retrieved_hits, rows = 0, 0, 0, []
    for item in items:
        query = f"{item['company']} {item['question']}"
        sources = (pages.search(item["question"], k, item["doc_name"]) if pages is not None
                   else service.search(query, k))
        retrieved = hit(" ".join(s["text"] for s in sources), item["answer"])
        answer = extract_answer(item["question"], sources, max_quotes=3).text()
        ok = hit(answer, item["answer"])
        extractive_hits += ok
        retrieved_hits += retrieved
        row: dict[str, Any] = {"id": item["financebench_id"], "retrieved": retrieved,
                               "extractive": ok}
        if generator is not None and len(rows) < model_limit:
            from rag.prompt import Evidence, build_messages

            evidence = Evidence(question=item["question"], intent="fundamental")
            evidence.add_passages(sources)
            text = "".join(generator.stream(build_messages(evidence), 160,
                                            evidence=evidence.to_dict()))
            row["model"] = hit(text, item["answer"])
            model_hits += row["model"]
        rows.append(row)
    total = len(items)
    result: dict[str, Any] = {
        "questions": total, "index_s": round(index_s, 1),
        "retrieval": ("BM25 over the question's own filing, top 3 pages" if lexical
                      else "the knowledge service's hybrid search, top 5"),
        "gold_in_retrieved_passages": round(retrieved_hits / total, 4),
        "extractive_gold_share": round(extractive_hits / total, 4),
    }
    if generator is not None:
        asked = min(total, model_limit)
        result["model_questions"] = asked
        result["model_gold_share"] = round(model_hits / asked, 4)
        result["extractive_gold_share_same_questions"] = round(
            sum(r["extractive"] for r in rows[:asked]) / asked, 4)
    return result


def main() -> None:
    """Print the finbench figures alone (``bench_answers.py --finbench`` adds them there)."""
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.common import emit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", default="/tmp/marketray-bench-finbench")
    parser.add_argument("--model", action="store_true", help="also the built-in model")
    parser.add_argument("--model-limit", type=int, default=26)
    parser.add_argument("--embedded", action="store_true",
                        help="ingest and embed the filings; search with the knowledge service")
    args = parser.parse_args()
    emit({"name": "answers_finbench", **finbench(
        Path(args.index_dir), with_model=args.model, lexical=not args.embedded,
        model_limit=args.model_limit)})


if __name__ == "__main__":
    main()
