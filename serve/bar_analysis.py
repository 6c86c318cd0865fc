"""Pattern detection and the price/volume summary over a BarsResponse (for the assistant)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger("marketray.assistant")

BARS_FOR_ANALYSIS = 390  # one regular session of 1-minute bars


def quant_analysis(bars: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run pattern detection and the price/volume summary over bars (oldest first).

    The summary covers the last session (390 bars); with more bars given, the relative
    volume compares today with the earlier sessions among them.
    """
    rows = list(getattr(bars, "bars", []) or [])
    if not rows:
        return [], {}
    columns = {name: np.asarray([float(getattr(bar, name)) for bar in rows], dtype=np.float64)
               for name in ("open", "high", "low", "close", "volume")}
    timestamps_ns = np.asarray([int(bar.timestamp.timestamp() * 1e9) for bar in rows],
                               dtype=np.int64)
    last = {name: values[-BARS_FOR_ANALYSIS:] for name, values in columns.items()}
    patterns: list[dict[str, Any]] = []
    analysis: dict[str, Any] = {}
    try:
        from market.patterns import detect_patterns

        patterns = _jsonable(detect_patterns(last["open"], last["high"], last["low"],
                                             last["close"], last["volume"]))
    except ImportError as exc:
        log.info("pattern detection unavailable: %s", exc)
    try:
        from market.analysis import price_volume_summary, relative_volume, unusual_volume

        analysis = _jsonable(price_volume_summary(
            last["open"], last["high"], last["low"], last["close"], last["volume"],
            timestamps_ns=timestamps_ns[-BARS_FOR_ANALYSIS:]))
        if len(rows) > BARS_FOR_ANALYSIS:
            rvol, crvol = relative_volume(timestamps_ns, columns["volume"])
            analysis["relative_volume"] = _jsonable(float(rvol[-1]))
            analysis["cumulative_relative_volume"] = _jsonable(float(crvol[-1]))
            analysis["unusual_volume"] = bool(unusual_volume(crvol[-1:])[0]
                                              or unusual_volume(rvol[-1:])[0])
    except ImportError as exc:
        log.info("price/volume analysis unavailable: %s", exc)
    return patterns, analysis


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
