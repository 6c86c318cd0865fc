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
import numpy as np
import torch
from rag.embedder import Embedder
from rag.torch_threads import use_torch_threads

maps = [line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line]
if not maps:
    print("no-libgomp")
    raise SystemExit
omp = ctypes.CDLL(maps[0])
seen = []

class Model:  # records the OpenMP thread count that each encode runs with
    dimension = 4
    def encode(self, texts, batch_size):
        seen.append(omp.omp_get_max_threads())
        return np.ones((len(texts), 4), dtype=np.float32) / 2

def on_a_new_thread(work):
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

torch.set_num_threads(2)
on_a_new_thread(lambda: seen.append(omp.omp_get_max_threads()))
on_a_new_thread(lambda: Embedder(Model, threads=2).encode(["a"]))
def own():
    use_torch_threads(2)
    seen.append(omp.omp_get_max_threads())
on_a_new_thread(own)
print(*seen)
"""


def test_a_model_thread_gets_the_threads_a_plain_thread_would_not() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120,
                            check=True)
    if result.stdout.strip() == "no-libgomp":
        pytest.skip("torch here is not built with GNU OpenMP")
    # a thread started after torch.set_num_threads(2) runs 1 (the bug this guards against);
    # an Embedder(threads=2) encoding on such a thread, and a thread that calls
    # use_torch_threads(2), run 2
    assert result.stdout.split() == ["1", "2", "2"]
