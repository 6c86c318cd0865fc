"""Groundedness: the share of numbers in answers found in the snapshot or the sources.

Runs the question set (bench/questions_assistant.jsonl) through the assistant's prompt
with the default local model and with the extractive generator, and checks every figure
with :mod:`rag.grounding`. The local model runs twice: as served (its decoder keeps to
the evidence's figures, :class:`rag.grounding.FigureGuard`) and unguarded, the model
alone. Reports each one's raw ratio (before the post-check), the ratio of what users
receive (after the post-check strips the rest), and the extractive generator's.
figure = delivered ratio of the served model; baseline = 0.95 target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.assistant_fixtures import evidence_for, questions  # noqa: E402
from bench.common import emit  # noqa: E402

TARGET = 0.95


def _ratio(grounded: int, total: int) -> float:
    return 1.0 if total == 0 else grounded / total


def run(generator: Any, max_new_tokens: int) -> dict[str, Any]:
    from rag.grounding import GroundingChecker, resolve_citations
    from rag.prompt import build_messages, reference_text

    raw_total = raw_grounded = kept_total = kept_grounded = 0
    examples: list[dict[str, Any]] = []
    for item in questions():
        evidence = evidence_for(item["question"], item["symbol"], item["intent"])
        answer = "".join(generator.stream(build_messages(evidence), max_new_tokens,
                                          evidence=evidence.to_dict()))
        answer, _ = resolve_citations(answer.strip(), len(evidence.passages))
        checker = GroundingChecker(reference_text(evidence))
        raw = checker.check(answer, "report")
        delivered = checker.check(checker.check(answer, "strip").text, "report")
        raw_total += raw.total
        raw_grounded += raw.grounded
        kept_total += delivered.total
        kept_grounded += delivered.grounded
        examples.append({"question": item["question"], "answer": answer[:400],
                         "figures": raw.total, "ungrounded": raw.ungrounded})
    return {"raw_ratio": round(_ratio(raw_grounded, raw_total), 4), "raw_figures": raw_total,
            "delivered_ratio": round(_ratio(kept_grounded, kept_total), 4),
            "delivered_figures": kept_total, "examples": examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--examples", action="store_true", help="print every answer")
    args = parser.parse_args()
    from core.settings import Settings
    from rag.generation import ExtractiveGenerator, load_generator

    model, report = load_generator(Settings(data_dir=Path(args.data_dir)))
    local = run(model, args.max_new_tokens)
    unguarded = None
    if hasattr(model, "guard_figures"):
        model.guard_figures = False
        unguarded = run(model, args.max_new_tokens)
    extractive = run(ExtractiveGenerator(), args.max_new_tokens)
    if not args.examples:
        for result in (local, unguarded, extractive):
            if result is not None:
                result.pop("examples")
    emit({"benchmark": "groundedness of numbers in answers",
          "figure": local["delivered_ratio"], "unit": "share of figures found in evidence, "
          "default model after post-check", "baseline": TARGET, "baseline_name": "target",
          "ratio": round(local["delivered_ratio"] / TARGET, 3),
          "model_raw_ratio": local["raw_ratio"],
          "unguarded_raw_ratio": unguarded["raw_ratio"] if unguarded else None,
          "backend": report.backend, "questions": len(questions()), "model": local,
          "model_unguarded": unguarded, "extractive": extractive})


if __name__ == "__main__":
    main()
