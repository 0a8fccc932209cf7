"""Caching of the budget-independent work of a selector across the budgets of a sweep.

Several selectors spend most of their time on work that does not depend on the budget:
NFPF's K-means seeding and reference SFLM, ProbCover's purity radius and ball graph, USL's
kNN density. A
sweep over budgets with the same pool, seed and parameters computes that work once when the
selector is given a ``memory`` (scikit-learn's convention: a directory or a
``joblib.Memory``); ``nfpf-run`` hands selectors that take one ``<paths.cache_dir>/memory``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from sklearn.utils.validation import check_memory

__all__ = ["Memo"]


class Memo:
    """Budget-independent pieces of one selection, cached in a ``joblib.Memory``.

    An entry is keyed by its name, the content hash of the data array (hashed once per
    array), the parameters and the source of the function that computes it; arguments that
    cannot change the result (a thread semaphore, the batch size of a distance pass) are
    passed through unhashed. As for the selection cache, a change in code that function
    calls (e.g. the SFLM) is not seen: clear the cache directory after one.

    Parameters
    ----------
    memory : str, joblib.Memory or None
        Where entries are stored; None computes everything and stores nothing.
    enabled : bool, default=True
        False computes everything (e.g. for a file-backed pool, which hashing would read
        once more).

    Attributes
    ----------
    hits : list of str
        Names of the entries this object reused instead of computing.
    """

    def __init__(self, memory: Any, enabled: bool = True) -> None:
        self.memory = check_memory(memory) if enabled else None
        self.hits: list[str] = []
        # id -> (array, hash): holding the array keeps its id from being reused
        self._hashes: dict[int, tuple[np.ndarray, str]] = {}

    def call(self, name: str, func: Callable[..., Any], data: Any, params: dict[str, Any],
             **unhashed: Any) -> Any:
        """``func(data, **params, **unhashed)``, reused from the memory when stored."""
        if self.memory is None or self.memory.location is None or \
                not isinstance(data, np.ndarray):
            return func(data, **params, **unhashed)
        import joblib

        if id(data) not in self._hashes:
            self._hashes[id(data)] = (data, joblib.hash(data))
        cached = self.memory.cache(_entry, ignore=["func", "data", "unhashed"])
        args = dict(name=name, func=func, data=data, data_hash=self._hashes[id(data)][1],
                    params=params, unhashed=unhashed,
                    source_hash=joblib.hash(inspect.getsource(func)))
        key = joblib.hash([name, args["data_hash"], params, args["source_hash"]])
        lock_dir = Path(self.memory.location) / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        # Two sweep workers asking for the same entry at once: the second waits for the
        # first's result instead of computing it again.
        with FileLock(str(lock_dir / f"{key}.lock")):
            if cached.check_call_in_cache(**args):
                self.hits.append(name)
            return cached(**args)


def _entry(name: str, func: Callable[..., Any], data: np.ndarray, data_hash: str,
           params: dict[str, Any], unhashed: dict[str, Any], source_hash: str) -> Any:
    """What :class:`Memo` stores: ``func(data, **params, **unhashed)`` under ``name``,
    ``data_hash``, ``params`` and ``source_hash`` (``func``, ``data`` and ``unhashed`` are
    not part of the key)."""
    return func(data, **params, **unhashed)
