"""torch's CPU thread count belongs to the OS thread that sets it: set it where the model runs.

``torch.set_num_threads`` sets OpenMP's thread count for the calling thread. A thread
started later (an executor's worker, ``asyncio.to_thread``, a batch scheduler) runs its
parallel regions with ``OMP_NUM_THREADS``, which Ray sets to an actor's ``num_cpus``:
1 for the fractional CPUs the model replicas reserve. ``torch.get_num_threads()`` there
still reports the calling thread's figure, so a new thread that does not set its own
count runs the model at about half the speed on two cores (docs/performance.md).
"""

from __future__ import annotations


def use_torch_threads(threads: int | None) -> None:
    """Run the calling thread's torch CPU work on ``threads`` threads (``None``: as it is)."""
    if threads:
        import torch  # noqa: PLC0415 - heavy import, only where a model runs

        torch.set_num_threads(threads)
