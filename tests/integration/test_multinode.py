"""marketray on a three-node Ray cluster: a head with no CPUs and two worker nodes.

One ``ray.cluster_utils.Cluster`` for the module, its GCS backed by the test Redis (a key
namespace of its own, deleted at the end), so the GCS can be killed and restarted. The
market actors and two ingress replicas spread over the workers; Serve's proxy runs on the
head, so clients keep one address while a worker dies. The feed journals its ticks in the
test Redis (its own database, emptied at the end), as a deployment with ``redis_url`` does.
The tests run in file order: the GCS restart first, then the loss of the worker holding a
shard but not the feed (a fresh worker joins after it), then the loss of the worker
holding the feed and the shards. The nodes share this machine's filesystem, as pods share
the ReadWriteMany data volume under KubeRay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import ray
import redis
import talib
import websockets
from ray import serve
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.market import start_market
from core.settings import Settings
from serve.app import Ingress
from serve.auth import TokenSigner
from serve.cli import pick_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "multinode-test-secret-0123456789abcdef"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY", "QQQ")
REDIS = "127.0.0.1:6379"
REDIS_DB = 3  # the market's journal and cache; the GCS keeps its keys in database 0
RECOVERY_LIMIT_S = 30.0
INGRESS_CLASS = "ServeReplica:marketray:Ingress"


@dataclass
class Deployment:
    cluster: Cluster
    settings: Settings
    base_url: str
    ws_url: str
    token: str
    workers: list[Any]
    market: Any
    started_s: float  # wall time the feed started: the run's bars are the ones after it
    losses_s: list[float] = field(default_factory=list)  # wall times of the node losses

    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", timeout=timeout,
                         headers={"Authorization": f"Bearer {self.token}"})


def _delete_namespace(namespace: str) -> None:
    """Delete the GCS's keys of this module; a GCS still stopping may write once more."""
    client = redis.Redis.from_url(f"redis://{REDIS}/0")
    for _ in range(5):
        keys = list(client.scan_iter(match=f"RAY{namespace}*", count=1_000))
        if keys:
            client.delete(*keys)
        time.sleep(0.5)
        if not any(client.scan_iter(match=f"RAY{namespace}*", count=1_000)):
            break
    client.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    namespace = f"marketray-it-{uuid.uuid4().hex[:12]}"
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "external_addresses": [REDIS, REDIS], "num_redis_shards": 1,
        "_system_config": {"external_storage_namespace": namespace}})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="marketray", log_to_driver=False)
    data_dir = tmp_path_factory.mktemp("multinode")
    # The REST probe polls faster than a viewer's budget allows; the budget is not tested here.
    settings = Settings(symbols=SYMBOLS, num_shards=2, market_actor_cpus=0.5, data_dir=data_dir,
                        secret_key=SECRET, serve_ingress="proxy", sim_rate=1_000.0,
                        redis_url=f"redis://{REDIS}/{REDIS_DB}", rate_budget_viewer=1_000_000)
    port = pick_port()
    try:
        started_s = time.time()
        market = start_market(settings)
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        app = Ingress.options(num_replicas=2, max_replicas_per_node=1,
                              ray_actor_options={"num_cpus": 0.5}).bind(
            settings.model_dump(mode="json"))
        serve.run(app, name="marketray", route_prefix="/")
        yield Deployment(cluster, settings, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}",
                         TokenSigner(SECRET).issue("viewer", "multinode"), workers, market,
                         started_s)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        _delete_namespace(namespace)
        market_keys = redis.Redis.from_url(f"redis://{REDIS}/{REDIS_DB}")
        for key in market_keys.scan_iter(match="marketray:*", count=1_000):
            market_keys.delete(key)
        market_keys.close()


def _nodes_of(class_name: str) -> Counter[str]:
    """Node ids of the live actors of ``class_name``, read from the GCS (the state API
    needs the dashboard, which this cluster does not start)."""
    actors = ray._private.state.actors().values()
    return Counter(a["Address"]["NodeID"] for a in actors
                   if a["ActorClassName"] == class_name and a["State"] == "ALIVE")


def _shard_nodes() -> Counter[str]:
    return _nodes_of("ShardActor")


# ---------------------------------------------------------------------------- clients


@dataclass
class RestProbe:
    """Polls /market/{symbol} for every symbol in a thread; records when each failed call
    was sent."""

    deployment: Deployment
    period_s: float = 0.2
    ok: int = 0
    answered: list[tuple[float, str]] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for symbol in SYMBOLS:
                # A failure dates from when its request was sent: one sent inside the
                # failover window may time out after it ends.
                sent = time.monotonic()
                try:
                    response = self.deployment.get(f"/market/{symbol}", timeout=3.0)
                    good = response.status_code == 200 and response.json()["price"] > 0
                except httpx.HTTPError:
                    good = False
                if good:
                    self.ok += 1
                    self.answered.append((time.monotonic(), symbol))
                else:
                    self.errors.append(sent)
            time.sleep(self.period_s)


@dataclass
class WsProbe:
    """A WebSocket client that resubscribes on every new connection; records frame times,
    connections, and when a connection ended (closed by the other side, or silent for
    ``stall_s``: a pause of the stream alone is not a lost connection)."""

    deployment: Deployment
    stall_s: float = 10.0
    frames: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def _session(self) -> None:
        url = f"{self.deployment.ws_url}/ws/market?token={self.deployment.token}"
        async with websockets.connect(url, open_timeout=5, close_timeout=1) as ws:
            self.connects.append(time.monotonic())
            await ws.send(json.dumps({"action": "subscribe", "symbols": list(SYMBOLS),
                                      "channels": ["market"]}))
            heard = time.monotonic()
            while not self.stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    if time.monotonic() - heard > self.stall_s:
                        raise
                    continue
                heard = time.monotonic()
                if frame.get("type") == "market":
                    self.frames.append(heard)

    async def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                await self._session()
            except (OSError, TimeoutError, websockets.WebSocketException):
                self.ended.append(time.monotonic())
                await asyncio.sleep(0.3)  # the replica went away: reconnect, resubscribe

    def run(self) -> None:
        asyncio.run(self._loop())


@contextlib.contextmanager
def clients(deployment: Deployment):
    rest, ws = RestProbe(deployment), WsProbe(deployment)
    threads = [threading.Thread(target=rest.run, daemon=True),
               threading.Thread(target=ws.run, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield rest, ws
    finally:
        rest.stop.set()
        ws.stop.set()
        for thread in threads:
            thread.join(timeout=10)


def _wait(predicate, timeout_s: float, what: str, describe=lambda: "") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout_s} s {describe()}")


# ---------------------------------------------------------------------------- tests


def test_shards_and_ingress_replicas_on_both_workers(deployment):
    workers = {w.node_id for w in deployment.workers}
    _wait(lambda: set(_nodes_of(INGRESS_CLASS)) == workers, 30, "ingress on both workers")
    assert set(_shard_nodes()) == workers
    assert deployment.cluster.head_node.node_id not in _nodes_of("FeedActor")
    assert deployment.get("/market/AAPL").status_code == 200


def test_gcs_restart_keeps_market_and_stream_serving(deployment):
    head = deployment.cluster.head_node
    with clients(deployment) as (rest, ws):
        _wait(lambda: len(ws.frames) > 5 and rest.ok > 10, 30, "clients running")
        head.kill_gcs_server()
        down_at = time.monotonic()
        frames_before = len(ws.frames)
        time.sleep(8.0)
        answered = {symbol for t, symbol in rest.answered if t >= down_at}
        frames_while_down = len(ws.frames) - frames_before
        # Failures are dated by sending; a call in flight at the kill (3 s timeout) counts.
        errors_while_down = sum(t >= down_at - 3.0 for t in rest.errors)
        head.start_gcs_server()
        # The cluster is whole again: the GCS answers and schedules new work.
        _wait(lambda: sum(n["Alive"] for n in ray.nodes()) == 3, 60, "nodes back")
        assert ray.get(ray.remote(lambda: 1).options(num_cpus=0.1).remote(), timeout=60) == 1
    assert answered == set(SYMBOLS)  # /market answered for every symbol without the GCS
    assert errors_while_down == 0
    assert frames_while_down >= 10  # the stream flowed without the GCS


class _QueryVectors:
    """Stands in for the query embedder: only the index's version matters here."""

    def encode_query(self, query: str) -> np.ndarray:
        return np.ones(16, np.float32) / 4.0


@ray.remote(num_cpus=0.1)
class _IndexFollower:
    """The knowledge replica's index service, alone on one node, polling the data dir."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from serve.knowledge import KnowledgeService

        self.service = KnowledgeService(Settings(**settings), _QueryVectors, samples_dir=None,
                                        torch_threads=None)
        self.service.start()
        self.service.start_polling(0.2)

    def version(self) -> str | None:
        return self.service.status()["version"]


@ray.remote(num_cpus=0.1)
def _publish(data_dir: str) -> str:
    from rag.index import IndexStore, table_with_vectors

    vectors = np.eye(3, 16, dtype=np.float32)
    table = table_with_vectors({"chunk_id": ["d:0", "d:1", "d:2"], "document_id": ["d"] * 3,
                                "page": [1, 2, 3], "text": ["alpha", "beta", "gamma"],
                                "embed_text": ["alpha", "beta", "gamma"]}, vectors)
    return IndexStore(Path(data_dir) / "index").publish(
        table, [{"document_id": "d", "content_hash": "dddd", "uri": "d.pdf"}])


def test_index_version_published_on_one_node_is_served_on_another(deployment):
    reader, writer = (NodeAffinitySchedulingStrategy(w.node_id, soft=False)
                      for w in deployment.workers)
    follower = _IndexFollower.options(scheduling_strategy=reader).remote(
        deployment.settings.model_dump(mode="json"))
    before = ray.get(follower.version.remote(), timeout=60)
    published = ray.get(_publish.options(scheduling_strategy=writer).remote(
        str(deployment.settings.data_dir)), timeout=60)
    assert published != before
    _wait(lambda: ray.get(follower.version.remote(), timeout=5) == published, 15,
          "the other node's index service on the new version")
    ray.kill(follower)


def _lose_node(deployment: Deployment, victim: Any, survivor: Any, *, last: bool) -> None:
    """Remove ``victim`` without grace while the clients run; check that every shard serves
    from ``survivor`` within the limit, REST fails only in that window, the WebSocket client
    gets frames again, and every bar of the run is there with TA-Lib's indicators (the
    ``last`` loss waits for its minute to close, so the check covers every loss's minute)."""
    with clients(deployment) as (rest, ws):
        _wait(lambda: len(ws.frames) > 5 and rest.ok > 10, 30, "clients running")
        errors_before = len(rest.errors)
        deployment.cluster.remove_node(victim, allow_graceful=False)
        removed_at = time.monotonic()
        deployment.losses_s.append(time.time())

        seen: dict[str, Any] = {}

        def recovered() -> bool:
            seen["shards"] = on_survivor = _shard_nodes()
            if on_survivor != Counter({survivor.node_id: 2}):
                return False
            seen["rest"] = [deployment.get(f"/market/{s}", 3.0).status_code for s in SYMBOLS]
            return all(code == 200 for code in seen["rest"])

        recovery_s = _wait(recovered, RECOVERY_LIMIT_S, "all shards serving on the survivor",
                           lambda: f"{seen}, survivor {survivor.node_id[:8]}, feed "
                           f"{ray.get(deployment.market.feed.status.remote(), timeout=5)}")
        recovered_at = time.monotonic()
        ok_at_recovery = rest.ok
        frames_at_recovery = len(ws.frames)
        _wait(lambda: len(ws.frames) > frames_at_recovery + 5 and ws.frames[-1] > max(
            ws.connects[-1], recovered_at), 20, "WebSocket frames after the recovery",
            lambda: f"connects {ws.connects}, ended {ws.ended}, removed at {removed_at}")
        time.sleep(2.0)
        status = ray.get(deployment.market.feed.status.remote(), timeout=10)
        assert status["running"], status
    failover = [t for t in rest.errors[errors_before:] if not removed_at <= t <= recovered_at]
    assert errors_before == 0
    assert failover == []  # REST errors only inside the failover window
    assert rest.ok > ok_at_recovery + 2 * len(SYMBOLS)
    # The client's replica died with the node (its connection ended: it reconnected) or
    # survived (its connection went on); either way its current connection gets frames.
    ended = [t for t in ws.ended if t > removed_at]
    if ended:
        assert ws.connects[-1] > ended[-1]
    assert any(t > max(ws.connects[-1], recovered_at) for t in ws.frames)
    assert status["journal_errors"] == 0
    print(f"recovery {recovery_s:.1f} s, REST errors in the window {len(rest.errors)}, "
          f"WebSocket connection ended {len(ended)} times after the loss, feed messages "
          f"{status['messages']}, resumes {status['resumes']}, reseeds {status['reseeds']}, "
          f"replayed ticks {status['replayed_ticks']}")
    _check_bars_complete_and_talib_exact(deployment, deployment.losses_s if last else [])


def test_loss_of_a_shard_node_recovers_the_shard_rest_and_stream(deployment):
    feed_node = next(iter(_nodes_of("FeedActor")))
    victim = next(w for w in deployment.workers if w.node_id != feed_node)
    survivor = next(w for w in deployment.workers if w is not victim)
    assert _shard_nodes()[victim.node_id] >= 1
    _lose_node(deployment, victim, survivor, last=False)
    assert ray.get(deployment.market.feed.status.remote(), timeout=10)["resumes"] == 0
    # A fresh worker takes the place of the lost one (and the ingress replica it lacked).
    deployment.workers = [survivor, deployment.cluster.add_node(num_cpus=2)]
    _wait(lambda: len(_nodes_of(INGRESS_CLASS)) == 2, 60, "the second ingress replica")


def test_loss_of_the_feed_and_shard_node_recovers_shards_rest_and_stream(deployment):
    shards = _shard_nodes()
    feed_node = next(iter(_nodes_of("FeedActor")))
    # The worker holding the feed and the shards: the minute forming at the loss is then
    # known only to the feed's journal in Redis.
    victim = next(w for w in deployment.workers if w.node_id == feed_node)
    survivor = next(w for w in deployment.workers if w is not victim)
    assert shards[victim.node_id] >= 1
    _lose_node(deployment, victim, survivor, last=True)
    status = ray.get(deployment.market.feed.status.remote(), timeout=10)
    assert status["resumes"] == 1
    assert status["replayed_ticks"] > 0


def _check_bars_complete_and_talib_exact(deployment: Deployment, losses_s: list[float]
                                         ) -> None:
    """Every minute since the feed started has its bar (the warm-up before it has the
    simulated sessions' own gaps), up to the last closed minute, which includes the minutes
    forming at ``losses_s`` (wall times), and the indicators over the whole series equal
    TA-Lib's."""
    loss_minutes = [int(t // 60 * 60) for t in losses_s]
    # Each loss's minute closed, and 2 s for the shards to apply the tick that closed it.
    time.sleep(max([0.0] + [m + 62 - time.time() for m in loss_minutes]))
    if time.time() % 60 < 2:
        time.sleep(2)  # let the shards close the minute that just ended
    first = int(deployment.started_s // 60 * 60)
    last_closed = int(time.time() // 60 * 60) - 60
    minutes = list(range(first, last_closed + 1, 60))
    for symbol in SYMBOLS:
        body = deployment.get(f"/market/{symbol}/bars?limit=5000").json()
        bars = body["bars"]
        seconds = np.array([np.datetime64(b["timestamp"].replace("Z", ""), "s").astype(int)
                            for b in bars])
        run = seconds[seconds >= first]
        assert list(run) == minutes, f"{symbol}: missing {sorted(set(minutes) - set(run))}"
        assert set(loss_minutes) <= set(minutes)
        close = np.array([b["close"] for b in bars])
        high = np.array([b["high"] for b in bars])
        low = np.array([b["low"] for b in bars])
        expected = {"sma_20": talib.SMA(close, 20), "ema_20": talib.EMA(close, 20),
                    "rsi_14": talib.RSI(close, 14), "atr_14": talib.ATR(high, low, close, 14)}
        for name, reference in expected.items():
            got = np.array([b.get(name) for b in bars], dtype=float)
            defined = ~np.isnan(reference)
            assert defined[len(defined) - len(run):].all(), f"{symbol} {name}"
            np.testing.assert_allclose(got[defined], reference[defined], rtol=1e-9,
                                       err_msg=f"{symbol} {name}")
