"""OpenAIGenerator over the openai client: server-sent events as servers really send them."""

import json
import threading

import httpx
import openai
import pytest

from rag.generation import OpenAIGenerator


def _endpoint(events: list[str], seen: list[httpx.Request] | None = None) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served-model"}]})
        body = b"".join(f"{e}\n\n".encode() for e in events)
        return httpx.Response(200, content=iter([body[i:i + 7] for i in range(0, len(body), 7)]),
                              headers={"content-type": "text/event-stream"})
    return httpx.Client(transport=httpx.MockTransport(handle))


def _delta(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


def test_data_split_over_lines_and_comments_still_give_every_piece():
    events = [_delta("Hello"), ": keep-alive",
              'data: {"choices": [{"index": 0,\ndata: "delta": {"content": " there"}}]}',
              _delta("."), "data: [DONE]"]
    generator = OpenAIGenerator("http://llm.local/v1/chat/completions", client=_endpoint(events))
    assert list(generator.stream([{"role": "user", "content": "hi"}], 16)) == [
        "Hello", " there", "."]


def test_error_event_mid_stream_raises_and_nothing_after_it_is_yielded():
    events = [_delta("a"), "data: " + json.dumps({"error": {"message": "out of memory"}}),
              _delta("b"), "data: [DONE]"]
    generator = OpenAIGenerator("http://llm.local", client=_endpoint(events))
    pieces: list[str] = []
    with pytest.raises(openai.APIError, match="out of memory"):
        pieces.extend(generator.stream([{"role": "user", "content": "hi"}]))
    assert pieces == ["a"]


def test_http_error_status_raises():
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(503, json={"error": {"message": "overloaded"}})

    generator = OpenAIGenerator("http://llm.local/v1", max_retries=0,
                                client=httpx.Client(transport=httpx.MockTransport(handle)))
    with pytest.raises(openai.APIStatusError, match="overloaded"):
        list(generator.stream([{"role": "user", "content": "hi"}]))


def test_request_carries_the_sampling_and_never_the_environments_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-user-key")
    seen: list[httpx.Request] = []
    generator = OpenAIGenerator("http://llm.local/v1", client=_endpoint(["data: [DONE]"], seen))
    assert list(generator.stream([{"role": "user", "content": "hi"}], 32)) == []
    body = json.loads(seen[-1].content)
    assert body["model"] == "served-model"
    assert body["max_tokens"] == 32
    assert body["temperature"] == 0.0
    assert body["stream"] is True
    assert all("sk-real-user-key" not in r.headers.get("authorization", "") for r in seen)


def test_stop_event_ends_the_stream():
    stop = threading.Event()
    events = [_delta("a"), _delta("b"), _delta("c"), "data: [DONE]"]
    generator = OpenAIGenerator("http://llm.local", client=_endpoint(events))
    stream = generator.stream([{"role": "user", "content": "hi"}], stop=stop)
    assert next(stream) == "a"
    stop.set()
    assert list(stream) == []
