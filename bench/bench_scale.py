"""Market ingest with the shards on one node against spread over two nodes, same run.

One ``ray.cluster_utils.Cluster``: a head with no CPUs and two worker nodes. Each arm
places a feed actor and ``BENCH_SHARDS`` shard actors (node affinity): ``one_node`` puts
them all on the first worker, ``two_nodes`` alternates the shards over both workers (the
feed stays on the first). The simulator is offered ``BENCH_RATE`` messages/s; sustained
ticks/s is the growth of the shards' tick counters over ``BENCH_SECONDS`` (the feed makes
bigger batches when shards fall behind, so this is min(offered, capacity)). The arms
alternate ``BENCH_ROUNDS`` times; the JSON gives each round and the median ratio
two_nodes / one_node. Nodes of a local cluster share this machine's cores: the ratio shows
what the spread costs or gains in scheduling and transport here, not what a second
machine's cores add (docs/scaling.md).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import emit  # noqa: E402

RATE = float(os.environ.get("BENCH_RATE", "400000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "2000"))
SHARDS = int(os.environ.get("BENCH_SHARDS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
NODE_CPUS = int(os.environ.get("BENCH_NODE_CPUS", "2"))


def _arm(nodes: list[str], symbols: tuple[str, ...]) -> dict[str, Any]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.feed import FeedActor
    from actors.shard import ShardActor, shard_config
    from core.settings import Settings
    from market.sharding import partition

    settings = Settings(symbols=symbols, sim_rate=RATE, sim_option_rate=RATE / 10,
                        num_shards=SHARDS)

    def on(node: str) -> NodeAffinitySchedulingStrategy:
        return NodeAffinitySchedulingStrategy(node, soft=False)

    config = shard_config(settings)
    shards = [ShardActor.options(scheduling_strategy=on(nodes[i % len(nodes)]))  # type: ignore[attr-defined]
              .remote(part, symbols, config)
              for i, part in enumerate(partition(symbols, SHARDS))]
    feed = FeedActor.options(scheduling_strategy=on(nodes[0])).remote(  # type: ignore[attr-defined]
        settings.model_dump(mode="json"), shards)
    try:
        ray.get(feed.start.remote())
        time.sleep(3.0)

        def total() -> tuple[int, float]:
            stats = ray.get([s.stats.remote() for s in shards])
            return sum(s["ticks"] + s["option_ticks"] for s in stats), time.perf_counter()

        n0, t0 = total()
        time.sleep(SECONDS)
        n1, t1 = total()
        status = ray.get(feed.status.remote())
        ray.get(feed.stop.remote())
    finally:
        for actor in (feed, *shards):
            ray.kill(actor)
    return {"ticks_per_s": (n1 - n0) / (t1 - t0), "feed_batches": status["batches"],
            "shard_errors": status["shard_errors"]}


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    symbols = tuple(f"S{i:05d}" for i in range(SYMBOLS))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0,
                                                             "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=NODE_CPUS) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    rounds = []
    try:
        for _ in range(ROUNDS):
            one = _arm([workers[0].node_id], symbols)
            two = _arm([w.node_id for w in workers], symbols)
            rounds.append({"one_node": one, "two_nodes": two,
                           "ratio": two["ticks_per_s"] / one["ticks_per_s"]})
    finally:
        ray.shutdown()
        cluster.shutdown()
    emit({"benchmark": "scale_ingest", "offered_rate": RATE * 1.1, "symbols": SYMBOLS,
          "shards": SHARDS, "seconds": SECONDS, "machine_cores": os.cpu_count(),
          "rounds": rounds,
          "one_node_ticks_per_s": statistics.median(r["one_node"]["ticks_per_s"] for r in rounds),
          "two_nodes_ticks_per_s": statistics.median(r["two_nodes"]["ticks_per_s"]
                                                     for r in rounds),
          "ratio_two_vs_one_node": statistics.median(r["ratio"] for r in rounds),
          "baseline": "one_node: the same shards and feed on one worker node, same run"})


if __name__ == "__main__":
    main()
