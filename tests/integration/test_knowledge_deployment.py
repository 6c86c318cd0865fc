"""The knowledge base: plain class, routes over HTTP, and one pass through Ray Serve.

The plain-class tests run with the data dir as a path and as a ``file://`` URI (the
object-store code path of core.storage).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.settings import Settings
from market.cache import InMemoryCache
from rag.embedder import Embedder
from rag.index import IndexStore
from rag.ingestion import ingest_files
from serve.auth import TokenSigner
from serve.deps import Services, protect
from serve.errors import install_error_handlers
from serve.knowledge import KnowledgeBase, KnowledgeService
from serve.routes_documents import router
from tests.unit.rag.kb_pdfs import HashingModel, corrupt_pdf, report_pdf, write

pytestmark = pytest.mark.integration
SECRET = "k" * 40


def hashing_embedder() -> Embedder:
    return Embedder(HashingModel)


def _wait(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(params=["path", "file_uri"])
def data_dir(request, tmp_path):
    return tmp_path if request.param == "path" else f"file://{tmp_path}"


@pytest.fixture
def service(data_dir):
    service = KnowledgeService(Settings(data_dir=data_dir), hashing_embedder)
    service.start()
    yield service
    service.stop()


def test_empty_data_dir_ingests_bundled_samples(service):
    status = service.status()

    assert status["ready"] is True
    assert status["documents"] == 2
    assert status["version"] == "v000001"
    uris = {d["uri"] for d in service.list_documents()}
    assert uris == {"options_primer.pdf", "market_structure.pdf"}


def test_search_returns_source_dicts(service):
    results = service.search("put call parity implied volatility", 3)

    assert results
    assert set(results[0]) == {"document_id", "title", "uri", "page", "score", "text"}
    assert results[0]["uri"] == "options_primer.pdf"


def test_upload_is_indexed_then_duplicate_then_deleted(service):
    data = report_pdf()

    record = service.submit("acme.pdf", data)
    done = service.process(record["document_id"], "acme.pdf", data)
    again = service.submit("acme-again.pdf", data)
    deleted = service.delete(record["document_id"])

    assert record["status"] == "pending"
    assert done["status"] == "indexed"
    assert again["status"] == "duplicate"
    assert deleted is True
    assert record["document_id"] not in {d["document_id"] for d in service.list_documents()}
    assert service.delete(record["document_id"]) is False


def test_bad_upload_is_reported_as_failed(service):
    data = corrupt_pdf()

    record = service.submit("broken.pdf", data)
    done = service.process(record["document_id"], "broken.pdf", data)

    assert done["status"] == "failed"
    assert done["reason"].startswith("corrupt")
    listed = {d["document_id"]: d for d in service.list_documents()}
    assert listed[record["document_id"]]["status"] == "failed"
    assert service.status()["documents"] == 2


def test_upload_on_one_replica_is_listed_and_finished_by_another(service, data_dir,
                                                                  monkeypatch):
    other = KnowledgeService(Settings(data_dir=data_dir), hashing_embedder)
    other.start()
    data = report_pdf([["Initech restructures its staplers division."]])

    record = service.submit("initech.pdf", data)
    seen_pending = {d["document_id"]: d["status"] for d in other._records(fresh=True)}
    # The first replica dies before ingesting; a replica starting later finishes the upload.
    monkeypatch.setattr("serve.knowledge.STALE_PENDING_S", 0.0)
    late = KnowledgeService(Settings(data_dir=data_dir), hashing_embedder)
    late.start()
    other.refresh()

    assert seen_pending[record["document_id"]] == "pending"
    assert other.status()["documents"] == 3
    assert other.search("Initech staplers", 1)[0]["uri"] == "initech.pdf"
    assert {"document_id": record["document_id"], "status": "indexed"}.items() <= next(
        d for d in other.list_documents() if d["document_id"] == record["document_id"]).items()
    assert not late.uploads.exists(f"{record['document_id']}.pdf")


def test_version_published_elsewhere_is_picked_up_without_restart(service, tmp_path):
    service.start_polling(interval_s=0.1)
    pdf = write(tmp_path / "globex.pdf", report_pdf([["Globex hedges copper with futures."]]))

    summary = ingest_files([pdf], IndexStore(tmp_path / "index"), hashing_embedder())

    _wait(lambda: service.status()["version"] == summary.version)
    assert service.search("Globex copper futures", 1)[0]["uri"] == "globex.pdf"


# --- HTTP routes over the deployment class (no Serve) -------------------------------------


@pytest.fixture
def client(tmp_path):
    settings = Settings(data_dir=tmp_path, max_upload_mb=1)
    knowledge = KnowledgeBase.func_or_class(settings.model_dump(mode="json"), hashing_embedder)
    _wait(lambda: knowledge.service.ready)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    signer = TokenSigner(SECRET)
    app.state.services = Services(settings=settings, signer=signer, cache=InMemoryCache(),
                                  market=None, knowledge=knowledge)
    with TestClient(protect(app)) as test_client:
        test_client.tokens = {role: signer.issue(role) for role in ("viewer", "analyst", "admin")}
        yield test_client
    knowledge.service.stop()


def _auth(client, role):
    return {"Authorization": f"Bearer {client.tokens[role]}"}


def test_search_needs_a_token_and_the_analyst_role(client):
    assert client.get("/search", params={"q": "options"}).status_code == 401
    assert client.get("/search", params={"q": "options"},
                      headers=_auth(client, "viewer")).status_code == 403


def test_search_returns_results(client):
    response = client.get("/search", params={"q": "NBBO bid ask spread", "k": 2},
                          headers=_auth(client, "analyst"))

    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) in (1, 2)
    assert results[0]["uri"] == "market_structure.pdf"
    assert results[0]["page"] >= 1


@pytest.mark.parametrize("params", [{"q": ""}, {"q": "x" * 1001}, {"q": "ok", "k": 0},
                                    {"q": "ok", "k": 51}])
def test_search_rejects_bad_parameters_with_422(client, params):
    response = client.get("/search", params=params, headers=_auth(client, "analyst"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_upload_list_duplicate_delete_over_http(client):
    admin = _auth(client, "admin")
    data = report_pdf()

    created = client.post("/documents", files={"file": ("acme.pdf", data, "application/pdf")},
                          headers=admin)
    document_id = created.json()["document_id"]

    def indexed() -> bool:
        listed = client.get("/documents", headers=admin).json()["documents"]
        return any(d["document_id"] == document_id and d["status"] == "indexed" for d in listed)

    _wait(indexed)
    duplicate = client.post("/documents", files={"file": ("b.pdf", data, "application/pdf")},
                            headers=admin)
    deleted = client.delete(f"/documents/{document_id}", headers=admin)
    missing = client.delete(f"/documents/{document_id}", headers=admin)

    assert created.status_code == 202
    assert created.json()["status"] == "pending"
    assert duplicate.status_code == 409
    assert deleted.status_code == 204
    assert missing.status_code == 404


def test_upload_needs_admin(client):
    response = client.post("/documents", files={"file": ("a.pdf", report_pdf(), "application/pdf")},
                           headers=_auth(client, "analyst"))

    assert response.status_code == 403


def test_non_pdf_upload_is_422_and_oversized_is_413(client):
    admin = _auth(client, "admin")

    not_pdf = client.post("/documents", files={"file": ("a.txt", b"hello", "text/plain")},
                          headers=admin)
    big = client.post("/documents",
                      files={"file": ("big.pdf", b"%PDF-1.7\n" + b"0" * (1024 * 1024 + 10),
                                      "application/pdf")}, headers=admin)

    assert not_pdf.status_code == 422
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"


# --- through Ray Serve ----------------------------------------------------------------------


@pytest.mark.slow
def test_deployment_batches_concurrent_searches_through_serve(tmp_path):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray import serve

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        payload = Settings(data_dir=tmp_path).model_dump(mode="json")
        handle = serve.run(KnowledgeBase.bind(payload), name="knowledge-test", route_prefix=None)
        _wait(lambda: handle.status.remote().result()["ready"], timeout_s=120)

        async def many() -> list[list[dict]]:
            queries = ["delta gamma theta", "market makers liquidity", "covered call",
                       "circuit breakers", "open interest", "NBBO", "implied volatility", "VWAP"]
            return await asyncio.gather(*(handle.search.remote(q, 3, None) for q in queries))

        results = asyncio.run(many())
        status = handle.status.remote().result()
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()

    assert status["documents"] == 2
    assert all(r and r[0]["page"] >= 1 for r in results)
    assert results[0][0]["uri"] == "options_primer.pdf"
