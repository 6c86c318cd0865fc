"""Deep /health checks: thresholds, resources and queues (no Ray)."""

from __future__ import annotations

import os

import pytest

from serve.observability.health import THRESHOLDS, Threshold, deep_checks, process_check


@pytest.mark.parametrize(("value", "expected"), [
    (None, "ok"), (0.5, "ok"), (0.8, "ok"), (0.81, "degraded"), (0.95, "degraded"),
    (0.96, "unhealthy")])
def test_threshold_judges_value(value: float | None, expected: str) -> None:
    assert Threshold(0.8, 0.95).judge(value) == expected


def test_threshold_without_unhealthy_level_caps_at_degraded() -> None:
    assert Threshold(95.0, None).judge(400.0) == "degraded"


def test_process_check_reports_worst_of_cpu_and_memory() -> None:
    check = process_check("shard", {"pid": 7, "cpu_percent": 20.0, "rss_mb": 13_000.0})

    assert check["status"] == "unhealthy"
    assert check["cpu_percent"]["status"] == "ok"
    assert check["rss_mb"]["unhealthy_above"] == THRESHOLDS["process_rss_mb"].unhealthy


def test_deep_checks_resources_and_queues_with_thresholds() -> None:
    usage = {"pid": 1, "cpu_percent": 10.0, "rss_mb": 300.0}
    shards = [{"process": usage}, None, {"process": usage}, {"process": usage}]
    feed = {"process": usage, "shards": 4, "shards_waiting": [0, 2, 3],
            "shards_waiting_avg": 0.75}

    checks = deep_checks(shards, feed, generator={"queued": 9}, knowledge={"pending_uploads": 1})

    resources, queues = checks["resources"], checks["queues"]
    assert set(resources["processes"]) == {"replica", "shard-0", "shard-2", "shard-3", "feed"}
    assert resources["processes"]["replica"]["pid"] == os.getpid()
    assert resources["processes"]["replica"]["rss_mb"]["value"] > 0
    assert queues["feed_backlog"]["value"] == 0.75
    assert queues["feed_backlog"]["status"] == "degraded"
    assert queues["generation"]["status"] == "degraded"
    assert queues["ingest"]["status"] == "ok"
    assert queues["status"] == "degraded"
    for check in (queues["feed_backlog"], queues["generation"], queues["ingest"]):
        assert {"value", "degraded_above", "unhealthy_above", "status"} <= set(check)


def test_deep_checks_healthy_when_nothing_waits() -> None:
    checks = deep_checks([{"process": None}], {"shards": 1, "shards_waiting": [0],
                                               "shards_waiting_avg": 0.2})

    assert checks["queues"]["status"] == "ok"
    assert checks["queues"]["generation"]["value"] is None
