"""The oracle: the only door through which a supervised active-learning strategy sees labels.

UAL selectors get a :class:`nfpf.core.selection.Pool`, which has no field for labels. A supervised
active-learning (AL) strategy gets a Pool too, plus an :class:`Oracle` that answers label
queries for pool indices and counts every label it hands out, so that a run can record (and
check) that the strategy paid for exactly the labels of its budget.
"""

from __future__ import annotations

import numpy as np

from nfpf.core.selection import check_whole

__all__ = ["LabelBudgetExceededError", "Oracle"]


class LabelBudgetExceededError(RuntimeError):
    """A strategy asked for more labels than the oracle's budget allows."""


class Oracle:
    """Answers label queries for pool indices and counts them.

    Parameters
    ----------
    labels : array-like of shape (n,)
        The pool's labels (held privately; only :meth:`query` returns any of them).
    budget : int, optional
        The most labels that may be queried in total (``None``: up to the pool size).

    Attributes
    ----------
    n_queried : int
        Labels handed out so far.
    queried : ndarray of shape (n_queried,), int64
        The queried pool indices, in query order.

    Notes
    -----
    Each index can be queried once (a label is paid for once); asking again for a labelled
    index, for an index outside the pool, or for more labels than the budget raises before
    any label is returned.
    """

    def __init__(self, labels, budget: int | None = None):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"Oracle labels must be a non-empty 1-D array (one label per "
                             f"pool sample); got shape {labels.shape}.")
        budget = check_whole("Oracle budget", budget, low=1, also=(None,))
        self.__labels = labels.copy()
        self.__labels.setflags(write=False)
        self.budget = labels.size if budget is None else budget
        self.__asked = np.zeros(labels.size, dtype=bool)
        self.__order: list[np.ndarray] = []

    @property
    def n(self) -> int:
        """Number of samples in the pool the oracle labels."""
        return int(self.__labels.size)

    @property
    def n_queried(self) -> int:
        return int(self.__asked.sum())

    @property
    def queried(self) -> np.ndarray:
        if not self.__order:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self.__order)

    def query(self, indices) -> np.ndarray:
        """The labels of ``indices`` (distinct, not yet queried pool indices).

        Parameters
        ----------
        indices : array-like of int, shape (m,)

        Returns
        -------
        labels : ndarray of shape (m,)
        """
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(f"Oracle.query takes a 1-D array of integer pool indices; got "
                             f"{indices.dtype} of shape {indices.shape}.")
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n):
            raise ValueError(f"Oracle.query: indices outside the pool [0, {self.n}).")
        if np.unique(indices).size != indices.size:
            raise ValueError("Oracle.query: repeated indices in one query.")
        again = indices[self.__asked[indices]]
        if again.size:
            raise ValueError(f"Oracle.query: {again.size} index(es) already labelled (first: "
                             f"{again[:5].tolist()}); query only new samples.")
        if self.n_queried + indices.size > self.budget:
            raise LabelBudgetExceededError(
                f"Oracle.query: {indices.size} more labels would make "
                f"{self.n_queried + indices.size}, above the label budget {self.budget}.")
        self.__asked[indices] = True
        self.__order.append(indices.copy())
        return self.__labels[indices].copy()

    def __repr__(self) -> str:
        return f"Oracle(n={self.n}, budget={self.budget}, queried={self.n_queried})"
