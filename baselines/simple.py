"""The simplest baselines: uniform random sampling and K-means centres."""

from __future__ import annotations

import numpy as np
from sklearn import cluster

from nfpf.selection import Pool, Selector, candidate_subset

__all__ = ["KMeans", "Random", "nearest_distinct"]


class Random(Selector):
    """Uniform sampling without replacement.

    Time O(n), memory O(n).
    """

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).choice(pool.n, size=budget, replace=False)


class KMeans(Selector):
    """K-means with K = budget clusters; from each cluster, the sample nearest its centroid.

    Two clusters can share their nearest sample only in degenerate data (duplicates); the
    duplicate slot then goes to the next-nearest unused sample of that centroid, so exactly
    ``budget`` distinct samples are returned.

    Parameters
    ----------
    n_init : int
        K-means restarts (scikit-learn ``n_init``).
    max_iter : int
        K-means iterations per restart.
    minibatch_above : int or None
        Use ``MiniBatchKMeans`` when the budget exceeds this many clusters (``None``: never).
        Changes the result (an approximation of K-means); off for budgets up to 500 by default.
    fit_subset : int or None
        Bounded mode for large pools: when the pool has more samples than this, K-means is
        fitted on a seeded random subset of that many samples
        (``np.sort(default_rng(seed).choice(n, fit_subset, replace=False))``) and each
        centroid still takes its nearest sample of the *whole* pool. Changes the result when
        n exceeds it (recorded in ``info_["fit_subset"]``); identical below it. ``None``
        (default): fit on the whole pool.

    Time O(m·B·d·iterations) for m = min(n, fit_subset) fitted samples, plus one chunked
    O(n·B·d) pass for the nearest samples; memory O(m·d + B·d) (scikit-learn copies the
    fitted samples) plus that chunked pass.
    """

    def __init__(self, n_init: int = 3, max_iter: int = 300, minibatch_above: int | None = 500,
                 fit_subset: int | None = None):
        if int(n_init) < 1:
            raise ValueError(f"n_init must be >= 1; got {n_init}.")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1; got {max_iter}.")
        if fit_subset is not None and int(fit_subset) < 1:
            raise ValueError(f"fit_subset must be a positive number of samples or None; "
                             f"got {fit_subset}.")
        self.n_init = int(n_init)
        self.max_iter = int(max_iter)
        self.minibatch_above = minibatch_above
        self.fit_subset = None if fit_subset is None else int(fit_subset)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        X = pool.features
        rows = candidate_subset(pool.n, budget, self.fit_subset, seed, "kmeans")
        fitted = X if rows is None else X[rows]
        self.info_["fit_subset"] = None if rows is None else int(rows.size)
        if self.minibatch_above is not None and budget > self.minibatch_above:
            km = cluster.MiniBatchKMeans(n_clusters=budget, n_init=self.n_init, random_state=seed,
                                 max_iter=self.max_iter, batch_size=max(1024, 3 * budget))
        else:
            km = cluster.KMeans(n_clusters=budget, n_init=self.n_init, max_iter=self.max_iter,
                        random_state=seed)
        km.fit(fitted)
        self.info_["inertia"] = float(km.inertia_)
        return nearest_distinct(X, km.cluster_centers_)


def nearest_distinct(X: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each centre, the nearest sample of ``X`` not already taken by an earlier centre.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (k, d), k <= n

    Returns
    -------
    ndarray of shape (k,): distinct row indices of ``X``.
    """
    from sklearn.metrics import pairwise_distances_argmin_min

    nearest, _ = pairwise_distances_argmin_min(centers, X)
    if np.unique(nearest).size == nearest.size:
        return nearest.astype(np.int64)
    # Rare (duplicate samples): resolve collisions centre by centre on the few that collide.
    taken = np.zeros(len(X), dtype=bool)
    out = np.empty(len(centers), dtype=np.int64)
    for j, center in enumerate(centers):
        if not taken[nearest[j]]:
            out[j] = nearest[j]
        else:
            d = np.einsum("ij,ij->i", X - center, X - center)
            d[taken] = np.inf
            out[j] = int(np.argmin(d))
        taken[out[j]] = True
    return out
