"""NFPF's initial seeds: K-means of a seed space, the per-cluster ranking, and exact PCA.

The seeding K-means runs on the pool's features, its pixels or a PCA of its pixels
(:func:`pca_features`, also NFPF+'s reconstruction space); :func:`kmeans_distances` gives
every sample's distances to the centroids, a per-sample key ranks the members of each
cluster, and :func:`per_cluster_seeds` takes the best-ranked samples of every cluster.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
import torch

from nfpf.core import kernels
from nfpf.method.rows import FloatRows, device_rows
from nfpf.method.sflm import gram

__all__ = ["kmeans_distances", "margin_key", "pca_features", "per_cluster_seeds"]


def _fit_rows(n: int, n_clusters: int, random_state: int, fit_subset: int | None
              ) -> np.ndarray | None:
    """The sorted seeded subset K-means is fitted on, or None for the whole pool."""
    if fit_subset is None or fit_subset >= n:
        return None
    return np.sort(np.random.default_rng(random_state).choice(
        n, size=max(fit_subset, n_clusters), replace=False))


def kmeans_distances(feats: Any, n_clusters: int, n_init: int, max_iter: int,
                     random_state: int, fit_subset: int | None, device: str = "cpu",
                     batch_size: int = 8192, on_device: torch.device | None = None,
                     ) -> tuple[np.ndarray, float, int | None]:
    """The seeding K-means: fit, then every sample's distances to the K centroids.

    Parameters
    ----------
    feats : ndarray or FloatRows of shape (n, p)
    n_clusters, n_init, max_iter, random_state : int
        scikit-learn's ``KMeans`` parameters.
    fit_subset : int or None
        Fit on a seeded random subset of this many samples when the pool is larger.
    device : str, default="cpu"
        Where it runs, by name (part of the memory's key).
    batch_size : int, default=8192
        Rows per distance batch.
    on_device : torch.device, optional
        That GPU, where :func:`nfpf.core.kernels.kmeans` replaces scikit-learn's.

    Returns
    -------
    distances : ndarray of shape (n, K)
    inertia : float
    fitted_rows : int or None
        None when K-means saw the whole pool, else the size of the subset it was fitted on.
    """
    from sklearn.cluster import KMeans

    n = feats.shape[0]
    fit_rows = _fit_rows(n, n_clusters, random_state, fit_subset)
    if on_device is not None:
        return _kmeans_distances_on(feats, n_clusters, n_init, max_iter, random_state,
                                    fit_rows, batch_size, on_device)
    rows_view = isinstance(feats, FloatRows)
    with warnings.catch_warnings():
        # fewer distinct points than clusters is reported in info_, not as a warning
        warnings.simplefilter("ignore", category=UserWarning)
        km = KMeans(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter,
                    random_state=random_state)
        if fit_rows is not None:
            km.fit(np.asarray(feats[fit_rows], dtype=np.float32))
        else:
            km.fit(np.asarray(feats[:n], dtype=np.float32) if rows_view else feats)
    if rows_view or fit_rows is not None:
        step = max(1, batch_size)
        dist = np.concatenate([km.transform(np.asarray(feats[s:s + step], dtype=np.float32))
                               for s in range(0, n, step)])
    else:
        dist = km.transform(feats)  # (n, K)
    return dist, float(km.inertia_), None if fit_rows is None else int(fit_rows.size)


def _kmeans_distances_on(feats: Any, n_clusters: int, n_init: int, max_iter: int,
                         random_state: int, fit_rows: np.ndarray | None, batch_size: int,
                         device: torch.device) -> tuple[np.ndarray, float, int | None]:
    """:func:`kmeans_distances` with :func:`nfpf.core.kernels.kmeans` on ``device``."""
    n = feats.shape[0]
    data = kernels.as_device_tensor(np.asarray(feats[:n], dtype=np.float32), device)
    fitted = data if fit_rows is None else data[torch.as_tensor(fit_rows, device=device)]
    result = kernels.kmeans(fitted, n_clusters, n_init=n_init, max_iter=max_iter,
                            seed=random_state, batch_size=batch_size)
    dist = kernels.center_distances(data, result.centers, batch_size=batch_size)
    return dist.cpu().numpy(), result.inertia, None if fit_rows is None else int(fit_rows.size)


def margin_key(dist: np.ndarray) -> np.ndarray:
    """Per-sample margin between the nearest and second-nearest centroid distances (the
    distance itself with one cluster); the smallest margins rank first."""
    if dist.shape[1] == 1:
        return dist[:, 0]
    two = np.partition(dist, 1, axis=1)[:, :2]
    return two[:, 1] - two[:, 0]


def per_cluster_seeds(labels: np.ndarray, key: np.ndarray, n_clusters: int, target: int,
                      fill: bool) -> tuple[list[int], str]:
    """Up to ``target`` seeds: the lowest-``key`` samples of every cluster.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        Cluster of every sample.
    key : ndarray of shape (n,)
        Rank within a cluster, lowest first (ties: the lower index).
    n_clusters : int
    target : int
        Seeds wanted; ``target // n_clusters`` per cluster, taken round-robin by rank (rank
        0 of every cluster, then rank 1, ...). Fewer seeds than clusters: one from each of
        the ``target`` largest clusters.
    fill : bool
        Fill up to ``target`` round-robin over the clusters' remaining samples in rank
        order (NFPF without progressive rounds: the seeds are the whole selection).

    Returns
    -------
    seeds : list of int
    rule : str
        Which rule applied (recorded in ``info_["seed_rule"]``).
    """
    n = labels.size
    order = np.lexsort((np.arange(n), key, labels))  # by cluster, then key, then index
    sizes = np.bincount(labels, minlength=n_clusters)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    per_cluster = target // n_clusters
    if per_cluster == 0:
        big = np.argsort(-sizes, kind="stable")[:target]
        return [int(order[starts[c]]) for c in big if sizes[c] > 0], "one_per_largest_cluster"
    take = np.minimum(sizes, per_cluster)
    seeds = [int(order[starts[c] + r]) for r in range(int(take.max(initial=0)))
             for c in range(n_clusters) if r < take[c]]
    if not fill or len(seeds) >= target:
        return seeds, "per_cluster"
    taken = np.zeros(n, dtype=bool)
    taken[seeds] = True
    rest = [order[starts[c]:starts[c] + sizes[c]] for c in range(n_clusters)]
    rest = [r[~taken[r]] for r in rest]
    for r in range(max((len(r) for r in rest), default=0)):
        seeds.extend(int(rest[c][r]) for c in range(n_clusters) if r < len(rest[c]))
    return seeds[:target], "per_cluster_then_round_robin"


def pca_features(X: Any, n_components: int, batch_size: int = 8192,
                 device: torch.device | None = None) -> np.ndarray:
    """Exact PCA projection, streamed: covariance in batches, then its top eigenvectors.

    Parameters
    ----------
    X : ndarray or FloatRows of shape (n, d)
    n_components : int
        Number of components p (capped at min(n, d)).
    batch_size : int
        Rows per batch.
    device : torch.device, optional
        A GPU to compute on (covariance in float64, ``torch.linalg.eigh``); None: the CPU
        path (scipy). The same axes up to float rounding and their signs.

    Returns
    -------
    Z : ndarray of shape (n, p), float32
        Centred X projected on the p leading principal axes (signs arbitrary).

    Notes
    -----
    Time ``O(n·d² + d³)``, memory ``O(d² + batch_size·d + n·p)`` (no copy of X), unlike
    scikit-learn's PCA which copies X first.
    """
    n, d = X.shape
    p = int(min(n_components, n, d))
    if device is not None:
        return _pca_on(X, p, batch_size, device)
    shift = torch.from_numpy(np.asarray(X[:batch_size], dtype=np.float32).mean(0))
    sums = torch.zeros(d, d, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, n, batch_size):
        xb = torch.from_numpy(np.asarray(X[start:start + batch_size], dtype=np.float32)) - shift
        sums += gram(xb).to(torch.float64)
        total += xb.sum(0).to(torch.float64)
    mean_c = total / n
    cov = (sums / n - torch.outer(mean_c, mean_c)).numpy()
    _, vecs = scipy.linalg.eigh(cov, subset_by_index=[d - p, d - 1])
    axes = torch.from_numpy(np.ascontiguousarray(vecs[:, ::-1]).astype(np.float32))
    mean = (shift.to(torch.float64) + mean_c).to(torch.float32)
    out = np.empty((n, p), dtype=np.float32)
    for start in range(0, n, batch_size):
        xb = torch.from_numpy(np.asarray(X[start:start + batch_size], dtype=np.float32))
        out[start:start + batch_size] = ((xb - mean) @ axes).numpy()
    return out


def _pca_on(X: Any, p: int, batch_size: int, device: torch.device) -> np.ndarray:
    """:func:`pca_features` on ``device``: rows copied in batches, float64 covariance."""
    n, d = X.shape
    rows = device_rows(X, device, batch_size)
    mean = rows.mean(dim=0, dtype=torch.float64)
    cov = torch.zeros(d, d, dtype=torch.float64, device=device)
    for start in range(0, n, batch_size):
        block = rows[start:start + batch_size].to(torch.float64) - mean
        cov += block.T @ block
    _, vecs = torch.linalg.eigh(cov / n)
    axes = vecs[:, -p:].flip(1).to(torch.float32)  # leading axes first
    out = torch.empty((n, p), dtype=torch.float32, device=device)
    for start in range(0, n, batch_size):
        out[start:start + batch_size] = (rows[start:start + batch_size] - mean.float()) @ axes
    return out.cpu().numpy()
