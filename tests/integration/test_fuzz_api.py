"""Schemathesis over every operation of the OpenAPI schema, in-process, with stub services.

The app is the real one (request pipeline, routes, error handlers); its services are
plain fakes (market, knowledge, an extractive generator), so a case costs about a
millisecond. Every operation gets at least 100 generated cases, valid and invalid, with
the admin token; ``ignored_auth`` also replays them without and with a wrong token.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from rag.generation import ExtractiveGenerator
from serve.app import create_api
from serve.deps import protect
from serve.models import GeneratorService
from tests.integration.assistant_fakes import FakeMarket
from tests.unit.serve.fakes import FakeGateway, make_services

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance, negative_data_rejection, ignored_auth,
          missing_required_header]


class StubKnowledge:
    """The knowledge base's methods the routes call, answering from memory."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    def search(self, q: str, k: int, filters: Any) -> list[dict[str, Any]]:
        return [{"document_id": "doc-1", "title": "Primer", "uri": "primer.pdf", "page": 1,
                 "score": 0.5, "text": f"about {q[:20]}"}][:k]

    def add_document(self, name: str, data: bytes) -> dict[str, Any]:
        record = {"document_id": f"d{len(self.documents)}", "uri": name, "status": "pending"}
        self.documents[record["document_id"]] = record
        return record

    def list_documents(self) -> list[dict[str, Any]]:
        return list(self.documents.values())

    def delete_document(self, document_id: str) -> bool:
        return self.documents.pop(document_id, None) is not None

    def status(self) -> dict[str, Any]:
        return {"version": 1}


class FuzzMarket(FakeGateway):
    """The market routes' fake gateway plus what the assistant reads."""

    def __init__(self) -> None:
        super().__init__()
        self.assistant = FakeMarket(self.symbols)

    async def snapshot(self, symbol: str) -> Any:
        return await self.assistant.snapshot(symbol)

    async def chain_summary(self, symbol: str) -> dict[str, Any]:
        return await self.assistant.chain_summary(symbol)


def _app() -> tuple[Any, str]:
    api = create_api()
    services = make_services()
    services.market = FuzzMarket()
    services.settings = Settings(rate_budget_admin=10**9, rate_budget_per_ip=10**9,
                                 symbols="AAPL,MSFT")
    services.knowledge = StubKnowledge()
    services.generator = GeneratorService(services.settings,
                                          generator=ExtractiveGenerator("fuzz"))
    api.state.services = services
    return protect(api), services.signer.issue("admin", "fuzzer")


APP, TOKEN = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=EXAMPLES)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_with_zero_failures(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
