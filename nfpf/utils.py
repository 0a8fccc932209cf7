"""Small helpers shared across the package and the baselines."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

__all__ = ["blas_threads", "torch_threads"]


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)``, restoring it afterwards.

    ``None`` leaves torch's setting alone. One thread avoids the collapse of torch's
    spinning thread pool on a CPU that other processes keep busy (measured here at a load
    average of 5-8 on 2 cores: DUAL on digits 22 s with one thread against 128 s with two;
    core-set on 60,000 x 50 with B = 1000, 5 s against 101 s).
    """
    if num_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _threadpool_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(limit: int):
    """Context manager limiting the BLAS/OpenMP thread pools to ``limit`` threads.

    ``threadpoolctl.threadpool_limits`` scans the process's loaded libraries on every call
    (about 7 ms here, 0.5 s over an MNIST NFPF selection's 70 rounds); one controller,
    created on first use, is reused instead.
    """
    return _threadpool_controller().limit(limits=int(limit))
