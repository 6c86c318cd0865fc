"""Parameter grids from ``NAME=START:STOP:STEP`` specs (CONTRACT §9)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from core.errors import InvalidInput
from market.research.strategies import DEFAULTS, Strategy

MAX_GRID = 1_000_000


def _number(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"--param {spec!r}: {text!r} is not a number") from None


def parse_values(spec: str) -> tuple[str, list[float]]:
    """Return (name, values) of ``NAME=START:STOP:STEP`` (STOP included when landed on) or
    ``NAME=VALUE``; values are whole numbers where every part is."""
    name, sep, body = spec.partition("=")
    if not sep or not name.strip():
        raise InvalidInput(f"--param {spec!r}: expected NAME=START:STOP:STEP or NAME=VALUE")
    parts = body.split(":")
    if len(parts) == 1:
        return name.strip(), [_number(parts[0], spec)]
    if len(parts) != 3:
        raise InvalidInput(f"--param {spec!r}: expected START:STOP:STEP")
    start, stop, step = (_number(p, spec) for p in parts)
    if step <= 0 or stop < start:
        raise InvalidInput(f"--param {spec!r}: need STEP > 0 and STOP >= START")
    count = int((stop - start) / step + 1e-9) + 1
    if count > MAX_GRID:
        raise InvalidInput(f"--param {spec!r}: more than {MAX_GRID} values")
    # start + i * step (not repeated addition) so 0.1 steps do not drift
    values = [round(start + i * step, 12) for i in range(count)]
    return name.strip(), values


def build_grid(strategy: Strategy, specs: Sequence[str] | Mapping[str, Sequence[float]]
               ) -> list[dict[str, float]]:
    """Return the cartesian product of the parameter values, in spec order, as dicts.

    Parameters not given take the strategy's defaults; unknown names and sets the strategy
    rejects (e.g. ``fast >= slow``) raise InvalidInput, except that combinations the
    strategy rejects are dropped when some remain (a ``fast``/``slow`` grid's upper half).
    """
    values: dict[str, list[float]] = {}
    items = ([parse_values(s) for s in specs] if not isinstance(specs, Mapping)
             else [(k, [float(x) for x in v]) for k, v in specs.items()])
    for name, vals in items:
        if name not in strategy.params:
            raise InvalidInput(f"{strategy.name} has no parameter {name!r} "
                               f"(it has {', '.join(strategy.params)})")
        values[name] = vals
    for name in strategy.params:
        if name not in values:
            default = DEFAULTS.get(strategy.name, {}).get(name)
            if default is None:
                raise InvalidInput(f"{strategy.name} needs --param {name}=...")
            values[name] = [float(default)]
    names = list(strategy.params)
    total = 1
    for name in names:
        total *= len(values[name])
    if total > MAX_GRID:
        raise InvalidInput(f"the grid has {total} parameter sets; at most {MAX_GRID}")
    grid = [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(values[n] for n in names))]
    problems = [strategy.check(p) for p in grid]
    kept = [p for p, problem in zip(grid, problems, strict=True) if problem is None]
    if not kept:
        raise InvalidInput(f"{strategy.name}: no valid parameter set ({problems[0]})")
    return kept
