"""Torch's global random generators, seeded for one block of code and restored after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generators seeded, restoring them afterwards.

    Weight initialisation and dropout draw from the global generator (PyTorch has no
    per-module one); forking it keeps the caller's random state untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
