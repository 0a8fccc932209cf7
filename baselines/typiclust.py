"""TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): typical samples of K-means clusters."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from baselines._neighbors import as_float_array, knn_density
from nfpf.selection import Pool, Selector

__all__ = ["TypiClust"]

log = logging.getLogger(__name__)


class TypiClust(Selector):
    """Pick the most typical sample of the largest, least-covered K-means clusters.

    With no labeled set (``|S| = 0``), the pool is clustered into
    ``K = min(B, max_clusters)`` clusters (``MiniBatchKMeans`` when ``K > minibatch_above``,
    else ``KMeans``). Clusters of at most ``min_cluster_size`` samples are ignored. Each pick
    takes, among the usable clusters, the one with the fewest picks so far (ties: the largest,
    then the lowest cluster id) and from it the unselected sample of highest typicality,
    ``1 / mean distance to its k nearest unselected samples of that cluster`` with
    ``k = min(k_neighbors, m // 2)`` for ``m`` remaining samples (the released code's rule; see
    :mod:`baselines._neighbors` for the distance convention).

    When ``B`` exceeds the number of usable clusters the picks keep cycling, so a cluster can
    give several samples; a cluster with no unselected sample left is skipped, and once all
    usable clusters are exhausted the small clusters are used in the same order. (The released
    code cycles too but fails on an exhausted cluster.)

    Parameters
    ----------
    max_clusters : int
        Upper bound on the number of clusters (paper: 500).
    min_cluster_size : int
        Clusters with at most this many samples are ignored while others remain (paper: 5).
    k_neighbors : int
        Neighbours of the typicality (paper: 20).
    minibatch_above : int
        Use ``MiniBatchKMeans`` (batch size ``batch_size``) when K exceeds this (paper: 50).
    batch_size : int
        ``MiniBatchKMeans`` batch size (released code: 5000).
    n_init : int or "auto"
        K-means restarts (scikit-learn ``n_init``).
    typicality_subset : int or None
        Bounded mode for large pools: when a picked cluster has more unselected samples than
        this, the typicality (and the pick) is computed among a random sample of that many
        of them (drawn by ``np.random.default_rng(seed)``, one draw per pick), so a pick
        costs O(typicality_subset² d) instead of O(m_c² d). Changes the result only for such
        clusters (``info_["typicality_subsampled_picks"]`` counts them); identical below the
        bound. ``None`` (default): exact.

    Attributes
    ----------
    cluster_labels_ : ndarray of shape (n,)
        The K-means cluster of every sample in the last selection.

    Time: K-means O(n K d iterations) plus typicality O(sum over picks of m_c^2 d) for the
    picked clusters' sizes m_c (O(n^2 d / K) when one pick per cluster; m_c capped at
    ``typicality_subset`` in the bounded mode). Memory O(n d) plus one
    cluster's distance block (chunked, O(chunk * m_c)).
    """

    def __init__(
        self,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        k_neighbors: int = 20,
        minibatch_above: int = 50,
        batch_size: int = 5000,
        n_init: int | str = "auto",
        typicality_subset: int | None = None,
    ):
        for name, value, low in (("max_clusters", max_clusters, 1),
                                 ("min_cluster_size", min_cluster_size, 0),
                                 ("k_neighbors", k_neighbors, 1),
                                 ("minibatch_above", minibatch_above, 0),
                                 ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if n_init != "auto" and (isinstance(n_init, bool) or not float(n_init).is_integer()
                                 or int(n_init) < 1):
            raise ValueError(f"n_init must be 'auto' or an integer >= 1; got {n_init!r}.")
        self.max_clusters = int(max_clusters)
        self.min_cluster_size = int(min_cluster_size)
        self.k_neighbors = int(k_neighbors)
        self.minibatch_above = int(minibatch_above)
        self.batch_size = int(batch_size)
        self.n_init = n_init if n_init == "auto" else int(n_init)
        if typicality_subset is not None and (
                isinstance(typicality_subset, bool) or not float(typicality_subset).is_integer()
                or int(typicality_subset) < 2):
            raise ValueError(f"typicality_subset must be an integer >= 2 or None; got "
                             f"{typicality_subset!r}.")
        self.typicality_subset = None if typicality_subset is None else int(typicality_subset)

    def _cluster(self, X: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
        if n_clusters == 1:
            return np.zeros(len(X), dtype=np.int64)
        if n_clusters > self.minibatch_above:
            km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=self.batch_size,
                                 n_init=self.n_init, random_state=seed)
        else:
            km = KMeans(n_clusters=n_clusters, n_init=self.n_init, random_state=seed)
        return km.fit_predict(X).astype(np.int64)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        X = as_float_array(pool.features)
        n_clusters = min(budget, self.max_clusters)
        log.info("typiclust: clustering %d samples into %d clusters", pool.n, n_clusters)
        labels = self._cluster(X, n_clusters, seed)
        self.cluster_labels_ = labels
        sizes = np.bincount(labels, minlength=n_clusters)
        usable = sizes > self.min_cluster_size
        # Members of every cluster, as index arrays (one stable sort, no loop over samples).
        order = np.argsort(labels, kind="stable")
        members = np.split(order, np.cumsum(sizes)[:-1])
        remaining = sizes.copy()
        picks_per_cluster = np.zeros(n_clusters, dtype=np.int64)
        available = np.ones(pool.n, dtype=bool)
        selected = np.empty(budget, dtype=np.int64)
        fallback_at = None
        rng = np.random.default_rng(seed)
        subsampled = 0
        for t in range(budget):
            eligible = usable & (remaining > 0)
            if not eligible.any():
                if fallback_at is None:
                    fallback_at = t
                    log.info("typiclust: all %d usable clusters exhausted after %d picks; "
                             "using clusters of <= %d samples", int(usable.sum()), t,
                             self.min_cluster_size)
                eligible = remaining > 0
            candidates = np.flatnonzero(eligible)
            # Fewest picks first, then the largest cluster, then the lowest id.
            best = np.lexsort((candidates, -sizes[candidates], picks_per_cluster[candidates]))[0]
            cluster = int(candidates[best])
            idx = members[cluster]
            idx = idx[available[idx]]
            if self.typicality_subset is not None and idx.size > self.typicality_subset:
                idx = np.sort(rng.choice(idx, size=self.typicality_subset, replace=False))
                subsampled += 1
            if idx.size == 1:
                pick = int(idx[0])
            else:
                k = max(1, min(self.k_neighbors, idx.size // 2))
                pick = int(idx[np.argmax(knn_density(X[idx], k))])
            selected[t] = pick
            available[pick] = False
            remaining[cluster] -= 1
            picks_per_cluster[cluster] += 1
        self.info_ = {
            "n_clusters": int(n_clusters),
            "n_nonempty_clusters": int((sizes > 0).sum()),
            "n_usable_clusters": int(usable.sum()),
            "small_cluster_fallback_at": fallback_at,
            "typicality_subsampled_picks": subsampled,
        }
        return selected
