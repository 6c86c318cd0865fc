"""Session-wide test hooks: end the pytest process without native finalisers.

After pytest has reported, the process still holds Ray's core worker, a Serve router
loop thread, and the OpenMP runtimes of torch and faiss. CPython's finalisation then runs
their C++ destructors in no fixed order while some of those threads are alive, and CI
once saw the process die of SIGSEGV there, after "547 passed": a green run failed.

So the last exit handler (registered here, before Ray or torch is imported, so it runs
after theirs: atexit is last-in, first-out) flushes the output and ends the process with
``os._exit`` and pytest's own exit status. Everything pytest reports has been written by
then and a failing run still fails; only the native destructors are skipped.
``MARKETRAY_TEST_HARD_EXIT=0`` turns it off to hunt teardown bugs; ``make test`` sets
``PYTHONFAULTHANDLER=1`` so a crash there prints every thread's stack.
"""

from __future__ import annotations

import atexit
import os
import sys

import pytest

_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def _exit_without_native_finalisers() -> None:
    if not _exit_status or os.environ.get("MARKETRAY_TEST_HARD_EXIT", "1") == "0":
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(_exit_status[-1])


atexit.register(_exit_without_native_finalisers)
