"""The simplest baselines: uniform random sampling and K-means centres."""

from __future__ import annotations

import numpy as np
import torch
from sklearn import cluster

from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.selection import Pool, Selector, candidate_subset, check_param

__all__ = ["KMeans", "Random"]


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
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"cpu"``: scikit-learn (the reference path). A GPU: the torch k-means of
        :func:`nfpf.core.kernels.kmeans` (Lloyd in float32 from scikit-learn's k-means++ draws,
        best of ``n_init`` by inertia), the same clustering as scikit-learn's up to float32
        rounding, so mostly the same picks (measured on digits: 93-100 % shared). The GPU
        path always runs full Lloyd k-means: ``minibatch_above`` is a CPU shortcut it does not
        need, so above it the picks differ as much as the CPU path's under another seed.
        ``"auto"``: the GPU when one is visible.
    batch_size : int or None
        GPU path: samples per distance block (GPU memory O(batch_size·B)); ``None``: blocks
        of about 256 MB.

    Time O(m·B·d·iterations) for m = min(n, fit_subset) fitted samples, plus one chunked
    O(n·B·d) pass for the nearest samples; memory O(m·d + B·d) (scikit-learn copies the
    fitted samples) plus that chunked pass.
    """

    def __init__(self, n_init: int = 3, max_iter: int = 300, minibatch_above: int | None = 500,
                 fit_subset: int | None = None, device: str = "auto",
                 batch_size: int | None = None):
        self.n_init = n_init
        self.max_iter = max_iter
        self.minibatch_above = minibatch_above
        self.fit_subset = fit_subset
        self.device = device
        self.batch_size = batch_size
        self.check_params()

    def check_params(self) -> None:
        check_param("n_init", self.n_init, low=1)
        check_param("max_iter", self.max_iter, low=1)
        check_param("minibatch_above", self.minibatch_above, low=0, also=(None,),
                    hint=" (None: never MiniBatchKMeans)")
        check_param("fit_subset", self.fit_subset, low=1, also=(None,),
                    hint=" (None: fit on the whole pool)")
        nfpf_device.check_device(self.device)
        check_param("batch_size", self.batch_size, low=1, also=(None,))

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        X = pool.features
        rows = candidate_subset(pool.n, budget, self.fit_subset, seed, "kmeans")
        self.info_["fit_subset"] = None if rows is None else int(rows.size)
        if gpu is not None:
            self.info_["device"] = str(gpu)
            with nfpf_device.gpu_memory_guard("kmeans", "selector.batch_size"):
                return self._select_torch(X, rows, budget, seed, gpu)
        fitted = X if rows is None else X[rows]
        if self.minibatch_above is not None and budget > self.minibatch_above:
            km = cluster.MiniBatchKMeans(n_clusters=budget, n_init=self.n_init, random_state=seed,
                                 max_iter=self.max_iter, batch_size=max(1024, 3 * budget))
        else:
            km = cluster.KMeans(n_clusters=budget, n_init=self.n_init, max_iter=self.max_iter,
                        random_state=seed)
        km.fit(fitted)
        self.info_["inertia"] = float(km.inertia_)
        return kernels.nearest_distinct_exact(X, km.cluster_centers_)

    def _select_torch(self, X: np.ndarray, rows: np.ndarray | None, budget: int, seed: int,
                      device: torch.device) -> np.ndarray:
        Xt = kernels.as_device_tensor(X, device)
        fitted = Xt if rows is None else Xt[torch.as_tensor(rows, device=device)]
        km = kernels.kmeans(fitted, budget, n_init=self.n_init, max_iter=self.max_iter,
                            seed=seed, batch_size=self.batch_size)
        self.info_["inertia"] = km.inertia
        return kernels.nearest_distinct(Xt, km.centers, batch_size=self.batch_size)

