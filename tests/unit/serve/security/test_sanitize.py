"""Masking secrets in settings and URLs; neutralising control characters in logged text."""

from __future__ import annotations

import json

from core.settings import Settings
from serve.security.sanitize import MASK, mask_url, masked_settings, neutralize


def test_masked_settings_hide_every_secret():
    canary = "canary-7f3b9c1e5d2a4b6c8e0f1a3b5c7d9e1f"
    settings = Settings(secret_key=canary, alpaca_key_id=canary, alpaca_secret_key=canary,
                        redis_url=f"redis://user:{canary}@127.0.0.1:6379/0",
                        llm_url=f"https://{canary}@llm.example/v1")
    shown = json.dumps(masked_settings(settings))
    assert canary not in shown
    assert masked_settings(settings)["secret_key"] == MASK
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_control_characters_are_neutralised():
    forged = "AAPL\n2026-01-01 INFO admin logged in\x1b[31m\u202e"
    assert "\n" not in neutralize(forged, keep_newlines=False)
    assert "\x1b" not in neutralize(forged)
    assert "\u202e" not in neutralize(forged)
    assert neutralize("two\nlines\ttab") == "two\nlines\ttab"
