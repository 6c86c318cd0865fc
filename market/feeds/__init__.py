"""Market-data feeds: the simulator, Alpaca, and replay of a recording.

:func:`make_feed` picks one from ``settings.feed``; each implementation is
imported only when chosen (only ``market.feeds.alpaca*`` imports alpaca-py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market.feeds.base import Feed

if TYPE_CHECKING:
    from core.settings import Settings


def make_feed(settings: Settings) -> Feed:
    """Return the feed ``settings.feed`` names (``sim``, ``alpaca`` or ``replay``)."""
    if settings.feed == "sim":
        from market.feeds.sim import SimulatedFeed  # noqa: PLC0415 - chosen at run time

        return SimulatedFeed.from_settings(settings)
    if settings.feed == "alpaca":
        from market.feeds.alpaca import AlpacaFeed  # noqa: PLC0415

        return AlpacaFeed.from_settings(settings)
    if settings.feed == "replay":
        from market.feeds.replay import ReplayFeed  # noqa: PLC0415

        return ReplayFeed.from_settings(settings)
    raise ValueError(f"unknown feed {settings.feed!r}")


__all__ = ["Feed", "make_feed"]
