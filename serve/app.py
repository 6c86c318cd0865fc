"""The marketray Serve application.

Deployment graph (arrows are handle calls; shards and feed are plain Ray actors)::

    HTTP/WS :8765 ──► Ingress (FastAPI: REST, /ws/market, /chat) ──► ShardActor × N
                          │   ├─ RequestPipeline in front (serve/security)
                          │   └─ MarketHub: polls shards, fans out to WebSockets   ▲
                          ├──► KnowledgeBase (hybrid retrieval, documents)          │
                          │        └──► Embedder (query vectors, @serve.batch, GPU) │
                          └──► Generator (local HF / OpenAI-compatible / extractive)│
                                                                                    │
    FeedActor (sim | alpaca | replay) ── columnar batches, one call per shard ──────┘

:func:`build_app` returns the bound application; nothing here calls
``serve.run``. Replica counts and resources come from :class:`AppArgs`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from actors.market import ensure_market
from core.settings import Settings
from market.cache import make_cache
from market.history import HistoryStore
from serve.auth import TokenSigner
from serve.deps import Services, install, protect
from serve.errors import install_error_handlers
from serve.hooks import NoHooks, PipelineHooks
from serve.market_gateway import MarketGateway
from serve.routes_admin import router as admin_router
from serve.routes_market import market_stream
from serve.routes_market import router as market_router
from serve.security.keyring import KEYRING_FILE, Keyring
from serve.security.policy import document_security, secured
from serve.stream import MarketHub

log = logging.getLogger("marketray.app")
OPTIONAL_ROUTERS = ("serve.routes_documents", "serve.routes_assistant", "serve.routes_admin_audit")


def create_api() -> FastAPI:
    """The FastAPI app with every router and the error handlers (no services yet)."""
    api = FastAPI(title="marketray", version="0.1.0",
                  description="Market analytics and research assistant on Ray.")
    install_error_handlers(api)
    api.include_router(market_router)
    api.include_router(admin_router)
    for module_name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        api.include_router(module.router)
    api.add_api_websocket_route("/", market_stream)
    document_security(api)

    @api.get("/", include_in_schema=False)
    @secured(None)
    async def _root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return api


api = create_api()
front = protect(api, server_request_ids=True)  # what Serve serves: pipeline, then app


class AppArgs(BaseModel):
    """What :func:`build_app` needs: settings and the shape of the deployment."""

    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides")
    ingress_replicas: int | None = Field(
        None, ge=1, description="default: the settings' ingress_replicas")
    with_knowledge: bool = True
    with_assistant: bool = True
    model_num_gpus: float = Field(0.0, ge=0, description="GPUs per model replica")
    model_num_cpus: float = Field(
        0.25, ge=0, description="logical CPUs reserved per model/knowledge replica; small by "
        "default so a 2-CPU machine schedules them all and keeps room for Ray Data ingest")


def signer_for(settings: Settings) -> TokenSigner:
    """The token signer over the service secret and ``<data_dir>/keyring.json``."""
    secret, _ = settings.resolved_secret()
    keyring = Keyring(secret, settings.data_dir / KEYRING_FILE, grace_s=settings.key_grace_s)
    return TokenSigner(keyring, audience=settings.token_audience)


def hooks_for(settings: Settings) -> PipelineHooks:
    """The observability hooks (``serve.observability``), or none when it is absent."""
    try:
        observability = importlib.import_module("serve.observability")
    except ModuleNotFoundError as exc:
        if exc.name != "serve.observability":
            raise
        return NoHooks()
    hooks: PipelineHooks = observability.build_hooks(settings)
    return hooks


def build_services(settings: Settings, knowledge: Any = None, embedder: Any = None,
                   generator: Any = None) -> Services:
    """Connect to the market actors and build a replica's :class:`Services`."""
    gateway = MarketGateway(ensure_market(settings), settings.symbols,
                            history=HistoryStore(settings.storage("history")))
    services = Services(settings=settings, signer=signer_for(settings),
                        cache=make_cache(settings.redis_url), market=gateway,
                        knowledge=knowledge, embedder=embedder, generator=generator,
                        hooks=hooks_for(settings))
    services.hub = MarketHub(gateway, poll_interval_s=settings.stream_poll_ms / 1e3)
    observe = getattr(services.hooks, "observe_services", None)  # metrics of hub and cache
    if observe is not None:
        observe(services)
    return services


@serve.deployment(max_ongoing_requests=2_500, ray_actor_options={"num_cpus": 0})
@serve.ingress(front)
class Ingress:
    """HTTP and WebSocket front door; holds one MarketHub per replica."""

    def __init__(self, settings: dict[str, Any], knowledge: Any = None, embedder: Any = None,
                 generator: Any = None) -> None:
        self.services = build_services(Settings(**settings), knowledge, embedder, generator)
        api.state.services = self.services
        install(self.services)


def build_app(args: AppArgs) -> Application:
    """Bind the deployment graph for ``args`` (see the module docstring)."""
    settings = Settings(**args.settings)
    payload = settings.model_dump(mode="json")
    knowledge = embedder = generator = None
    resources = {"num_cpus": args.model_num_cpus, "num_gpus": args.model_num_gpus}
    if args.with_assistant:
        models = importlib.import_module("serve.models")
        embedder = models.Embedder.options(ray_actor_options=resources).bind(payload)
        # OpenMP threads that wait passively yield a shared machine's cores instead of
        # spinning on them (see serve.models.Generator).
        generator = models.Generator.options(ray_actor_options={
            **resources, "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}},
        ).bind(payload)
    if args.with_knowledge:
        knowledge_module = importlib.import_module("serve.knowledge")
        knowledge = knowledge_module.KnowledgeBase.options(
            ray_actor_options={**resources, "num_gpus": 0}).bind(payload, query_embedder=embedder)
    ingress = Ingress.options(num_replicas=args.ingress_replicas or settings.ingress_replicas,
                              max_ongoing_requests=settings.max_ws_clients + 500,
                              logging_config={"enable_access_log": settings.access_log,
                                              "encoding": "JSON"})
    return ingress.bind(payload, knowledge, embedder, generator)
