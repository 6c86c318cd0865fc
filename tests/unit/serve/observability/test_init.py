"""The settings record: changes between starts, secrets masked."""

from __future__ import annotations

from pathlib import Path


def test_settings_changes_recorded_masked(tmp_path: Path) -> None:
    from core.settings import Settings
    from serve.observability import masked_settings, settings_changes

    path = tmp_path / "last_settings.json"
    first = masked_settings(Settings(secret_key="s" * 40, port=8765))
    second = masked_settings(Settings(secret_key="t" * 40, port=9000))

    assert settings_changes(path, first) == {}  # nothing recorded before
    assert settings_changes(path, first) == {}
    assert settings_changes(path, second) == {"port": {"from": 8765, "to": 9000}}
    assert "s" * 40 not in path.read_text()
    assert first["secret_key"] == "***"
    with_password = masked_settings(Settings(redis_url="redis://:hunter2@10.0.0.9:6379/0"))
    assert with_password["redis_url"] == "redis://***@10.0.0.9:6379/0"
