"""Model threads run the torch thread count they were given, as Ray starts model replicas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter with OMP_NUM_THREADS=1, which is what Ray gives an actor
# with a fractional CPU. OpenMP's own count per thread is read from the libgomp that torch
# loaded (torch.get_num_threads() reports the process-wide figure on every thread).
PROBE = """
import ctypes, threading
import torch
from rag.torch_threads import model_executor, use_torch_threads

maps = [line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line]
if not maps:
    print("no-libgomp")
    raise SystemExit
omp = ctypes.CDLL(maps[0])
torch.set_num_threads(2)
seen = []
plain = threading.Thread(target=lambda: seen.append(omp.omp_get_max_threads()))
plain.start(); plain.join()
seen.append(model_executor(2, "model").submit(omp.omp_get_max_threads).result())
def own():
    use_torch_threads(2)
    seen.append(omp.omp_get_max_threads())
thread = threading.Thread(target=own)
thread.start(); thread.join()
print(*seen)
"""


def test_a_model_thread_gets_the_threads_a_plain_thread_would_not() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120,
                            check=True)
    if result.stdout.strip() == "no-libgomp":
        pytest.skip("torch here is not built with GNU OpenMP")
    # a thread started after torch.set_num_threads(2) runs 1 (the bug this guards against);
    # the model executor's thread and a thread that calls use_torch_threads run 2
    assert result.stdout.split() == ["1", "2", "2"]
