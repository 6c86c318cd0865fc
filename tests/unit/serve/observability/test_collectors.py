"""The serve-side collectors: the hub's frame counts, knowledge-base and generator metrics."""

from __future__ import annotations

from typing import Any

from actors.telemetry import Recorder


class FakeKnowledge:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"version": "v000003", "chunks": 120, "documents": 4}

    def status(self) -> dict[str, Any]:
        return self.state


class FakeHooks:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_security_event(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))


def test_knowledge_metrics_version_chunks_ingest_and_published_event() -> None:
    from serve.observability.collectors import KnowledgeMetrics

    knowledge, recorder, hooks = FakeKnowledge(), Recorder(), FakeHooks()
    metrics = KnowledgeMetrics(knowledge, recorder, hooks)

    metrics()  # the version at start is not a publication
    metrics.ingested({"status": "indexed", "pages": 7, "chunks": 30})
    metrics.ingested({"status": "failed", "reason": "encrypted: the PDF needs a password"})
    metrics.ingested({"status": "duplicate"})
    metrics.searched(0.04)
    knowledge.state = {"version": "v000004", "chunks": 150, "documents": 5}
    metrics()
    counts, gauges, observations = recorder.drain()

    assert hooks.events == [("index.published",
                             {"version": "v000004", "chunks": 150, "documents": 5})]
    assert gauges[("marketray_kb_index_version", ())] == 4
    assert gauges[("marketray_kb_index_chunks", ())] == 150
    assert [counts[("marketray_kb_ingested_total", (u,))] for u in
            ("documents", "pages", "chunks")] == [1, 7, 30]
    assert counts[("marketray_kb_skipped_total", ("encrypted",))] == 1
    assert counts[("marketray_kb_skipped_total", ("duplicate",))] == 1
    assert observations[("marketray_kb_search_seconds", ())] == [0.04]


def test_generator_metrics_queue_is_waiting_streams() -> None:
    from serve.observability.collectors import GeneratorMetrics

    class Service:
        active = 2

    service, recorder = Service(), Recorder()
    metrics = GeneratorMetrics(service, recorder)
    metrics.in_progress = 5
    metrics.first_token(0.3)
    metrics.tokens(42)

    metrics()
    counts, gauges, observations = recorder.drain()

    assert gauges[("marketray_llm_active_sequences", ())] == 2
    assert gauges[("marketray_llm_queue_length", ())] == 3
    assert counts[("marketray_llm_tokens_total", ())] == 42
    assert observations[("marketray_llm_time_to_first_token_seconds", ())] == [0.3]


def test_hub_collector_counts_deltas_behind_and_outbox() -> None:
    from serve.observability.collectors import HubCollector

    class Client:
        def __init__(self, sent: int, conflated: int, unsent: int) -> None:
            self.sent, self.conflated, self.unsent = sent, conflated, unsent

    class Hub:
        def __init__(self, *clients: Client) -> None:
            self.subscribers = set(clients)
            self.departed_sent = self.departed_conflated = 0

        def remove(self, client: Client) -> None:  # as MarketHub.remove keeps the counts
            self.subscribers.discard(client)
            self.departed_sent += client.sent
            self.departed_conflated += client.conflated

    fast, slow = Client(10, 0, 0), Client(3, 5, 4)
    hub = Hub(fast, slow)
    recorder = Recorder()
    collect = HubCollector(hub, recorder)

    collect()
    fast.sent, slow.conflated, slow.unsent = 25, 6, 0
    hub.remove(fast)  # a client that leaves between two exports still counts
    collect()
    counts, gauges, _ = recorder.drain()

    assert counts[("marketray_ws_frames_sent_total", ("market",))] == 28
    assert counts[("marketray_ws_frames_conflated_total", ("market",))] == 6
    assert gauges[("marketray_ws_clients_behind", ("market",))] == 0
    assert gauges[("marketray_ws_outbox_frames", ("market",))] == 0
