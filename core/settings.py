"""One settings object for the whole service, read from ``MARKETRAY_*`` variables.

Every layer (actors, pipelines, serve) builds its configuration from
:class:`Settings`; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.storage import Storage, is_uri, split_uri, validate_location

SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ", "AMZN", "META")
_PLACEHOLDER_SECRETS = {"changethis", "changeme", "secret", "password", "marketray"}
SECRET_FILE_NAME = "secret.key"
# Every batch sent to a shard costs a Ray call on each side, many times a second, while one
# shard's numba pass keeps up with far more ticks: extra shards pay off only when one would
# have more work than a core, i.e. with thousands of symbols (bench/bench_market_cpu.py).
SYMBOLS_PER_SHARD = 1_000


def normalize_symbol(raw: str) -> str:
    """Return ``raw`` upper-cased if it is a valid ticker, else raise ``ValueError``."""
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(
            f"invalid symbol {raw!r}: expected 1-10 characters, a letter first, "
            "then letters, digits, '.' or '-'"
        )
    return symbol


# A local model's numeric precision; ``auto`` is resolved by rag.precision.resolve_dtype.
Precision = Literal["auto", "float32", "bfloat16", "float16"]


class Settings(BaseSettings):
    """Service configuration (CONTRACT §4); invalid values fail at start with a clear message."""

    model_config = SettingsConfigDict(env_prefix="MARKETRAY_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "0.0.0.0"  # noqa: S104 - the service is meant to listen on all interfaces
    port: int = Field(8765, ge=1, le=65535)
    data_dir: Path = Field(
        Path("./data"), description="where the service keeps its data: a path (a shared "
        "ReadWriteMany volume on a cluster) or an object-store URI (s3://bucket/prefix, "
        "gs://bucket/prefix, file:///abs/path). With a bucket, history, recordings, the "
        "knowledge index, uploads and the research lake live there and this node's own "
        "files (secret, logs, audit, downloaded index versions) under local_dir")
    data_url: str | None = Field(
        None, description="set from data_dir when it is a URI; not meant to be set by hand")
    local_dir: Path | None = Field(
        None, description="this node's own files when data_dir is an object-store URI; "
        "default ./data")
    secret_key: SecretStr | None = None
    feed: Literal["sim", "alpaca", "replay"] = "sim"
    symbols: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SYMBOLS
    redis_url: str | None = None

    alpaca_key_id: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    alpaca_stock_stream_url: str | None = None
    alpaca_option_stream_url: str | None = None
    alpaca_data_url: str | None = None
    alpaca_trading_url: str | None = None
    alpaca_feed: Literal["iex", "sip"] = "iex"

    llm_model: str | None = None
    llm_url: str | None = None
    llm_dtype: Precision = Field(
        "auto", description="a local model's weights and activations; auto = float16 on a "
        "GPU, bfloat16 on CPUs that compute it natively (AVX512-BF16, AMX), else float32")
    embed_dtype: Precision = Field(
        "auto", description="the embedding model's precision (same rule as llm_dtype; its "
        "vectors are float32 either way)")
    answer_mode: Literal["auto", "composed", "phrase"] = Field(
        "auto", description="who writes /analyze and /chat answers: composed = from the "
        "analytics' figures, no model; phrase = the model phrases the composed facts under "
        "the quality gate; auto = phrase with an endpoint (llm_url) or a configured local "
        "model, composed with the built-in small model or none")
    llm_threads: int = Field(
        0, ge=0, description="torch threads of a local generator on CPU; 0 = every core but "
        "one, at least one (the market side keeps a core; its OpenMP threads wait passively)")

    # Market state and feeds.
    num_shards: int = Field(
        0, ge=0, le=256, description="shard actors; 0 = one per 1,000 symbols (at least one)")
    market_actor_cpus: float = Field(
        0.0, ge=0, description="logical CPUs each shard and the feed actor reserve; above 0 "
        "keeps them off a head node started with num-cpus 0 (as under KubeRay)")
    sim_seed: int = 7
    sim_rate: float = Field(2_000.0, gt=0, description="simulated stock messages per second")
    sim_option_rate: float = Field(500.0, ge=0, description="simulated option messages/s")
    sim_always_open: bool = Field(
        True, description="simulate trading outside New York hours too (demos at night)")
    feed_interval_ms: float = Field(20.0, gt=0, le=1_000, description="feed batch period")
    replay_dir: str | None = Field(
        None, description="recording to replay: a path or URI (default: the recordings)")
    replay_speed: float = Field(1.0, ge=0, description="0 = as fast as possible")
    record: bool = False
    risk_free_rate: float = Field(0.045, ge=-0.05, le=0.5)
    dividend_yield: float = Field(0.0, ge=0.0, le=0.5)
    bar_history: int = Field(2_000, ge=50, le=100_000, description="1-min bars held per symbol")

    # Alpaca feed (market/feeds/alpaca*.py).
    alpaca_stock_budget: int = Field(30, ge=1, description="max stock symbols streamed")
    alpaca_option_budget: int = Field(200, ge=0, description="max option contracts streamed")
    alpaca_silence_s: float = Field(
        30.0, gt=0, description="reconnect after this long without data while the market is open"
    )
    alpaca_silence_market_hours_only: bool = True
    alpaca_backoff_initial_s: float = Field(1.0, gt=0)
    alpaca_backoff_max_s: float = Field(60.0, gt=0)
    alpaca_fatal_retry_s: float = Field(
        300.0, gt=0, description="retry period after an auth/subscription refusal"
    )
    alpaca_warmup_minutes: int = Field(600, ge=0, description="1-min bars backfilled at start")
    alpaca_chain_days: int = Field(45, ge=0, description="expirations seeded, days ahead")

    # Recording, replay and history.
    record_dir: str | None = Field(
        None, description="where recordings go, a path or URI; default <data_dir>/recordings")
    history_retention_days: int = Field(365, ge=1)

    # Serving.
    serve_ingress: Literal["proxy", "haproxy"] = Field(
        "haproxy", description="haproxy: Ray Serve's HAProxy ingress straight to the ingress "
        "replicas (faster, and real WebSocket backpressure); proxy: Serve's Python proxy")
    ingress_replicas: int = Field(
        1, ge=1, description="Ingress (HTTP/WebSocket) replicas; HAProxy balances over them")
    access_log: bool = Field(
        False, description="log every HTTP request (Serve's access log); errors are always "
        "logged. Off by default: it costs ingress CPU on every request")
    ingress_metrics: bool = Field(
        False, description="HAProxy ingress: Serve's per-request HTTP metrics (one syslog "
        "line per request, parsed by the proxy actor). Off by default: it lowers the "
        "requests/s the ingress serves")
    stream_poll_ms: float = Field(
        15.0, ge=5, le=1_000, description="the shortest period between the market "
        "stream's fetches of changed symbols; a fetch with nothing new waits up to this "
        "long for the shards' next ingest, so frames follow the feed's batches")
    max_ws_clients: int = Field(2_000, ge=1)
    max_upload_mb: int = Field(50, ge=1)

    # Security (serve/security): addresses, tokens, rate limits, WebSocket limits.
    ip_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="CIDRs allowed to connect (empty: every address not denied)")
    ip_deny: Annotated[tuple[str, ...], NoDecode] = Field((), description="CIDRs refused")
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="CIDRs of proxies whose X-Forwarded-For and X-Request-ID are believed")
    token_audience: str = Field("marketray-api", min_length=1)
    key_grace_s: float = Field(
        7 * 24 * 3600.0, ge=0, description="how long tokens signed by a retired key still verify")
    rate_limit_enabled: bool = True
    rate_window_s: float = Field(60.0, gt=0, description="the window the budgets below span")
    rate_budget_viewer: int = Field(1_200, ge=1, description="cost units per window and subject")
    rate_budget_analyst: int = Field(2_400, ge=1)
    rate_budget_admin: int = Field(6_000, ge=1)
    rate_budget_per_ip: int = Field(12_000, ge=1, description="cost units per window and address")
    max_body_kb: int = Field(64, ge=1, description="largest JSON request body")
    revocation_refresh_s: float = Field(
        0.5, gt=0, le=5, description="how often a replica reloads the shared revocation list")
    ws_max_connections_per_subject: int = Field(20, ge=1)
    ws_messages_per_s: float = Field(20.0, gt=0, description="client messages per connection")
    ws_message_burst: int = Field(40, ge=1)
    ws_max_frame_bytes: int = Field(64 * 1024, ge=256, description="larger frames close 1009")
    ws_auth_timeout_s: float = Field(10.0, gt=0)
    ws_signature_window_s: float = Field(
        5.0, gt=0, description="allowed |now - ts| of signed frames")

    # Observability (serve/observability): metrics, request log, audit log.
    observability: bool = Field(
        True, description="application metrics, the JSON request log and the audit log; off "
        "only for the benchmark's baseline arm")
    request_log: bool = Field(True, description="one JSON line per request and connection")
    audit_reads: bool = Field(
        True, description="audit every authenticated read (refusals and writes always are)")
    audit_max_mb: int = Field(64, ge=1, description="audit file size that starts the next file")
    audit_dir: Path | None = Field(None, description="default <data_dir>/audit")
    metrics_export_port: int = Field(
        0, ge=0, le=65535, description="Ray's metrics export port on a cluster that "
        "`marketray serve` starts itself; 0 = Ray picks one (printed at start)")

    @field_serializer("secret_key", "alpaca_key_id", "alpaca_secret_key", when_used="json")
    def _reveal(self, value: SecretStr | None) -> str | None:
        """JSON dumps carry the real values: they rebuild Settings in actors and replicas
        (``Settings(**settings.model_dump(mode="json"))``). ``repr`` and logs stay masked."""
        return None if value is None else value.get_secret_value()

    @model_validator(mode="before")
    @classmethod
    def _split_data_url(cls, values: object) -> object:
        """Move a URI given as ``data_dir`` into ``data_url``; ``data_dir`` stays a local
        path (the URI's own for file://, else ``local_dir``) for this node's files."""
        if not isinstance(values, dict):
            return values
        raw = values.get("data_dir")
        if raw is not None and is_uri(str(raw)):
            url = validate_location(str(raw))
            values = {**values, "data_url": url}
            scheme, rest = split_uri(url)
            values["data_dir"] = rest if scheme == "file" else (
                values.get("local_dir") or "./data")
        elif values.get("data_url"):
            values = {**values, "data_url": validate_location(str(values["data_url"]))}
        return values

    @field_validator("record_dir", "replay_dir", mode="before")
    @classmethod
    def _location(cls, value: object) -> str | None:
        return None if value is None or value == "" else validate_location(str(value))

    @field_validator("symbols", mode="before")
    @classmethod
    def _parse_symbols(cls, value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        symbols = tuple(dict.fromkeys(normalize_symbol(str(s)) for s in items if str(s).strip()))
        if not symbols:
            raise ValueError("MARKETRAY_SYMBOLS must name at least one symbol")
        return symbols

    @field_validator("ip_allow", "ip_deny", "trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        networks = []
        for item in (str(i).strip() for i in items):
            if item:
                try:
                    networks.append(str(ipaddress.ip_network(item, strict=False)))
                except ValueError as exc:
                    raise ValueError(f"not an IP network: {item!r}") from exc
        return tuple(networks)

    @model_validator(mode="after")
    def _size_shards(self) -> Settings:
        """Resolve ``num_shards=0`` from the symbol count (the same on every node)."""
        if self.num_shards == 0:
            self.num_shards = min(256, -(-len(self.symbols) // SYMBOLS_PER_SHARD))
        return self

    @model_validator(mode="after")
    def _reject_placeholder_secret(self) -> Settings:
        if self.secret_key is not None and self.environment != "development":
            value = self.secret_key.get_secret_value()
            if value.lower() in _PLACEHOLDER_SECRETS or len(value) < 32:
                raise ValueError(
                    "MARKETRAY_SECRET_KEY is a placeholder or shorter than 32 characters; "
                    "set a random secret in production"
                )
        return self

    def storage(self, *parts: str) -> Storage:
        """Return the shared data directory (or ``parts`` under it) every node can reach.

        ``data_url`` when set, else ``data_dir`` made absolute on this node.
        """
        return Storage(self.data_url or self.data_dir).child(*parts)

    def resolved_secret(self) -> tuple[str, bool]:
        """Return the signing secret and whether it was generated just now.

        Uses ``MARKETRAY_SECRET_KEY`` when set, else ``<data_dir>/secret.key``,
        creating it (mode 0600) on first use.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value(), False
        path = self.data_dir / SECRET_FILE_NAME
        if path.exists():
            return path.read_text().strip(), False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(value)
        path.chmod(0o600)
        return value, True
