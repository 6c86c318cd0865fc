"""What every research job shares: Ray start-up, progress, the manifest, outputs, the CLI end."""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import ray

from core.errors import InvalidInput, MarketrayError, NotFound
from core.settings import normalize_symbol
from core.storage import Storage, StorageError, is_uri

T = TypeVar("T")

# One thread per task: the jobs parallelise over Ray workers, not inside them.
WORKER_ENV = {"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
LIBRARIES = ("marketray", "numpy", "numba", "polars", "pyarrow", "ray", "alpaca-py", "TA-Lib")


def symbols_and_dates(symbols: Iterable[str], start: str | date, end: str | date
                      ) -> tuple[list[str], date, date]:
    """Return the sorted, normalised symbols and the ``start``/``end`` days (ISO or dates).

    A malformed symbol or date raises :class:`InvalidInput` naming it.
    """
    try:
        names = sorted({normalize_symbol(s) for s in symbols})
        first = date.fromisoformat(start) if isinstance(start, str) else start
        last = date.fromisoformat(end) if isinstance(end, str) else end
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return names, first, last


def ray_init(address: str | None, workers: int | None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS) or start a local Ray with ``workers`` CPUs."""
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)  # a cluster, e.g. under `ray job submit`
    else:
        # "local": a fresh cluster even where another one runs on this machine
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 log_to_driver=False,
                 runtime_env={"env_vars": WORKER_ENV})


def cluster_cpus() -> int:
    """Return the CPUs of the connected Ray cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def library_versions() -> dict[str, str | None]:
    """Return the installed versions of the libraries a job's results depend on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_rss_bytes() -> int:
    """Return this process's peak resident memory in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def write_manifest(out: Path | Storage, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` under ``out`` (sorted keys, so reruns diff cleanly).

    ``out`` may be a :class:`core.storage.Storage` (an object-store lake); the path
    returned is then relative to it.
    """
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    if isinstance(out, Storage):
        out.write_text("manifest.json", text)
        return out.local_path("manifest.json") if out.is_local else Path("manifest.json")
    path = out / "manifest.json"
    path.write_text(text)
    return path


def storage_version(storage: Storage) -> str | None:
    """Return ``data_version`` of a lake at any location; None when it holds no bars."""
    from market.research.data import data_version

    try:
        return data_version(storage)
    except NotFound:
        return None


def input_location(data: str | Path | Storage) -> str | Storage:
    """Return a job's input as Ray tasks receive it: a Storage as is, a URI or a path as text."""
    if isinstance(data, Storage) or is_uri(data):
        return data if isinstance(data, Storage) else str(data)
    return str(Path(data))


def output_storage(out: str | Path | Storage, *, what: str = "output location") -> Storage:
    """Return the job location ``out`` (a path, a URI or a Storage) as a Storage.

    A bad location raises :class:`core.errors.InvalidInput` naming ``what`` it is.
    """
    if isinstance(out, Storage):
        return out
    try:
        return Storage(out)
    except (StorageError, ValueError) as exc:
        raise InvalidInput(f"{what} {out}: {exc}") from exc


def shown(storage: Storage) -> Path | str:
    """Return where outputs went, for callers and summaries: a local path, else the URI."""
    return storage.local_path() if storage.is_local else storage.location


def write_table(storage: Storage, name: str, table: pl.DataFrame) -> None:
    """Write ``table`` as the Parquet file ``name`` under ``storage``, whole or not at all."""
    buffer = io.BytesIO()
    table.write_parquet(buffer, statistics=True)
    storage.write_bytes(name, buffer.getbuffer())


def manifest(job: str, config: Mapping[str, Any], data_version: str | None, *,
             seed: int | None = None, **fields: Any) -> dict[str, Any]:
    """Return a job's manifest: its configuration, input version, libraries, seed, ``fields``."""
    return {"job": job, "config": dict(config), "data_version": data_version,
            "libraries": library_versions(), "seed": seed, **fields}


def write_outputs(out: str | Path | Storage | None, tables: Mapping[str, pl.DataFrame],
                  manifest: Mapping[str, Any]) -> Path | str | None:
    """Write each table as ``<name>.parquet`` and the manifest under ``out``; None: nothing.

    ``out`` is a path, a URI or a Storage; returns :func:`shown` of it.
    """
    if out is None:
        return None
    target = output_storage(out)
    target.makedirs()
    for name, table in tables.items():
        write_table(target, f"{name}.parquet", table)
    write_manifest(target, manifest)
    return shown(target)


def run_and_print(job: Callable[[], T], summary: Callable[[T], Mapping[str, Any]]) -> int:
    """Run ``job`` for a command line; return its exit code.

    Prints ``summary(result)`` as JSON and returns 0, or prints a
    :class:`MarketrayError` as ``error: ...`` on stderr and returns 2.
    """
    try:
        result = job()
    except MarketrayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(dict(summary(result)), indent=2, default=str))
    return 0


class Progress:
    """A tqdm bar over symbols on stderr with rows/s; silent when disabled."""

    def __init__(self, total: int, *, enabled: bool, what: str = "symbols") -> None:
        self._bar: Any = None
        self._rows = 0
        self._start = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=" " + what, file=sys.stderr, mininterval=0.5,
                             dynamic_ncols=True)

    def advance(self, items: int, rows: int) -> None:
        """Count ``items`` done and ``rows`` processed."""
        self._rows += rows
        if self._bar is not None:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            self._bar.set_postfix_str(f"{self._rows / elapsed:,.0f} rows/s", refresh=False)
            self._bar.update(items)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
