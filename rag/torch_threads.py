"""torch's CPU thread count belongs to the OS thread that sets it: set it where the model runs.

``torch.set_num_threads`` sets OpenMP's thread count for the calling thread. A thread
started later (an executor's worker, ``asyncio.to_thread``, a batch scheduler) runs its
parallel regions with ``OMP_NUM_THREADS``, which Ray sets to an actor's ``num_cpus``:
1 for the fractional CPUs the model replicas reserve. ``torch.get_num_threads()`` there
still reports the calling thread's figure. Measured on a 2-core machine, ten 2048x2048
matrix products after ``torch.set_num_threads(2)``: in a Ray actor with ``num_cpus`` 0
or 1, 1.08-1.14 s on the calling thread against 1.98-2.1 s on a new thread; in a process
with ``OMP_NUM_THREADS=1``, 0.99-1.03 s, 1.87-1.98 s, and 0.99-1.03 s on a new thread
that set its own count.
"""

from __future__ import annotations


def use_torch_threads(threads: int | None) -> None:
    """Run the calling thread's torch CPU work on ``threads`` threads (``None``: as it is)."""
    if threads:
        import torch  # noqa: PLC0415 - heavy import, only where a model runs

        torch.set_num_threads(threads)
