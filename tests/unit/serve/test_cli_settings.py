"""CLI settings: flag values override the environment; a bad value is one line naming it."""

from __future__ import annotations

import pytest

from serve.cli_settings import load_settings


def test_flags_override_and_unset_flags_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETRAY_PORT", "8123")

    from_env = load_settings({"port": None})
    from_flag = load_settings({"port": 9001})

    assert from_env.port == 8123
    assert from_flag.port == 9001


def test_an_invalid_value_exits_with_the_field_and_the_reason() -> None:
    with pytest.raises(SystemExit) as info:
        load_settings({"port": -5})

    message = str(info.value.code)
    assert message.startswith("marketray: invalid configuration: port: ")
    assert "\n" not in message
