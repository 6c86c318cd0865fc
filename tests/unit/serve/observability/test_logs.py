"""Structured log lines: events as JSON with their fields, tokens masked."""

from __future__ import annotations

import json

import pytest

from serve.observability.logs import JsonFormatter, event

TOKEN = "eyJhbGciOiJIUzI1NiJ9.canary-token-value.sig"


def test_event_log_line_is_json_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    logger = logging.getLogger("marketray.test_events")
    with caplog.at_level(logging.INFO, logger="marketray.test_events"):
        event(logger, "feed.reconnected", feed="alpaca", attempt=3, token=TOKEN)

    line = json.loads(JsonFormatter().format(caplog.records[0]))

    assert (line["event"], line["feed"], line["attempt"], line["level"]) == (
        "feed.reconnected", "alpaca", 3, "INFO")
    assert line["token"] == "***"
