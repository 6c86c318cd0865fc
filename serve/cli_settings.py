"""Read the settings for a CLI command, turning a bad value into one line naming it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core.settings import Settings


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Return the settings with the given flag values on top; exit with a message if invalid."""
    try:
        return Settings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        raise SystemExit(f"marketray: invalid configuration: {problems}") from None
