"""Small helpers shared across the package and the baselines."""

from __future__ import annotations

import contextlib
import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["blas_threads", "cpu_count", "ordered_map", "release_free_memory", "single_threaded",
           "single_threaded_worker", "thread_limit", "torch_threads"]

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


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


def single_threaded() -> contextlib.AbstractContextManager[None]:
    """Run the block with torch and the BLAS/OpenMP pools limited to one thread each.

    Used where work is small (a thread wake-up costs more than it gains, badly so on a busy
    host) and where results must not depend on the machine's core count: a single-threaded
    kernel's rounding does not depend on how many cores there are. Parallelism then comes
    from running independent pieces side by side (:func:`ordered_map`).
    """
    return thread_limit(1)


def single_threaded_worker() -> None:
    """Initializer of a worker thread whose torch work must run single-threaded.

    torch's thread setting reaches MKL per thread (``mkl_set_num_threads_local``), so a new
    thread would otherwise run MKL products with every core: oversubscribed next to its
    siblings, and with other rounding than the same product in the calling thread.
    """
    torch.set_num_threads(1)


def ordered_map(
    fn: Callable[[_Item], _Result], items: Iterable[_Item], n_jobs: int
) -> Iterator[_Result]:
    """Yield ``fn(item)`` for every item, in order, computing up to ``n_jobs`` at a time.

    Threads (torch and BLAS release the GIL), each running torch single-threaded
    (:func:`single_threaded_worker`; call it under :func:`single_threaded` so that BLAS
    libraries are limited too); at most ``n_jobs + 1`` results are in flight or waiting,
    so memory stays bounded on a long stream. ``n_jobs <= 1`` maps in the calling thread.
    Results come back in item order whatever the scheduling, so a caller that combines them
    in that order gets the same numbers for every ``n_jobs``.
    """
    if n_jobs <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="nfpf",
                            initializer=single_threaded_worker) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > n_jobs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an abandoned generator: drop what has not started
            for future in pending:
                future.cancel()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_free_memory() -> None:
    """Hand memory that is free but kept by the C allocator back to the system (glibc).

    Work spread over threads leaves freed blocks in per-thread arenas that glibc keeps for
    reuse; after a phase that allocated much in several threads (NFPF's seeding beside the
    reference SFLM) they would count towards the next phase's peak. No-op elsewhere.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def cpu_count() -> int:
    """Cores this process may run on: its affinity mask, capped by ``SLURM_CPUS_PER_TASK``
    in a SLURM job (a cluster that does not bind tasks to cores leaves the mask at every
    core of the node)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores


@contextlib.contextmanager
def thread_limit(num_threads: int) -> Iterator[None]:
    """Run the block with torch, BLAS and OpenMP each limited to ``num_threads`` threads.

    For one job among several running side by side (a local parallel sweep): without a
    limit each job would start a thread per core, and jobs × cores threads on the cores
    make every parallel region wait for descheduled threads.
    """
    with torch_threads(num_threads), blas_threads(num_threads):
        yield
