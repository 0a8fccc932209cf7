"""TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): typical samples of K-means clusters."""

from __future__ import annotations

import logging

import numpy as np
import torch
from nfpf.baselines._neighbors import as_float_array, knn_density, l2_normalize
from sklearn.cluster import KMeans, MiniBatchKMeans

from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.selection import Pool, Selector

__all__ = ["DISTANCES", "TypiClust", "check_typiclust_options"]

log = logging.getLogger(__name__)

#: Values of ``distance``: the released code's squared distances, the paper's distances.
DISTANCES = ("squared", "euclidean")


def check_typiclust_options(max_clusters: int, min_cluster_size: int, k_neighbors: int,
                            distance: str, normalize: bool, minibatch_above: int,
                            batch_size: int, prefix: str = "") -> None:
    """Validate the options TypiClust and its active-learning form share; each message
    names ``prefix`` + the option (e.g. ``"selector.k_neighbors"``)."""
    for name, value, low in (("max_clusters", max_clusters, 1),
                             ("min_cluster_size", min_cluster_size, 0),
                             ("k_neighbors", k_neighbors, 1),
                             ("minibatch_above", minibatch_above, 0),
                             ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
            raise ValueError(f"{prefix}{name} must be an integer >= {low}; got {value!r}.")
    if distance not in DISTANCES:
        raise ValueError(f"{prefix}distance must be one of {DISTANCES} ('squared': the "
                         f"released code, 'euclidean': the paper); got {distance!r}.")
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"{prefix}normalize must be true or false; got {normalize!r}.")


class TypiClust(Selector):
    """Pick the most typical sample of the largest, least-covered K-means clusters.

    With no labeled set (``|S| = 0``), the features are L2-normalised (``normalize``) and
    clustered into ``K = min(B, max_clusters)`` clusters (``MiniBatchKMeans`` when
    ``K > minibatch_above``, else ``KMeans``). Clusters of at most ``min_cluster_size`` samples
    are ignored while others remain. Each pick takes, among the usable clusters, the one with
    the fewest picks so far (ties: the largest, then the lowest cluster id) and from it the
    unselected sample of highest typicality, ``1 / mean distance to its k nearest unselected
    samples of that cluster`` with ``k = min(k_neighbors, m // 2)`` for ``m`` remaining samples.

    The defaults follow the released code, which differs from the paper's formula in two
    choices: it clusters L2-normalised features (``normalize=True``), and its neighbours come
    from faiss ``IndexFlatL2``, which returns *squared* distances, so its typicality is
    ``1 / mean squared distance`` (``distance="squared"``). ``distance="euclidean"`` is the
    paper's ``1 / mean distance``. The neighbour convention (the sample itself excluded by
    index) is :mod:`nfpf.baselines._neighbors`'.

    When ``B`` exceeds the number of usable clusters the picks keep cycling, so a cluster can
    give several samples; a cluster with no unselected sample left is skipped, and once all
    usable clusters are exhausted the small clusters are used in the same order. (The released
    code cycles too but fails on an exhausted cluster.) Since K = B, every cluster the size
    rule drops costs a cluster its pick: the freed picks go to second picks of the largest
    clusters. This bites when B / n is large (few samples per cluster); it is then logged as
    a warning and recorded in ``info_["warnings"]`` and ``info_["n_dropped_clusters"]``.

    Parameters
    ----------
    max_clusters : int
        Upper bound on the number of clusters (paper: 500).
    min_cluster_size : int
        Clusters with at most this many samples are ignored while others remain (released
        code: 5). 0: every non-empty cluster is used.
    k_neighbors : int
        Neighbours of the typicality (paper: 20).
    distance : {"squared", "euclidean"}
        Typicality from the mean squared distance (released code) or the mean distance
        (paper).
    normalize : bool
        L2-normalise the features before clustering and typicality (released code). An
        all-zero row is left at the origin (:func:`nfpf.baselines._neighbors.l2_normalize`);
        ``info_["n_zero_rows"]`` counts them.
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
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"cpu"``: scikit-learn K-means and the CPU kNN (the reference path). A GPU: the
        torch k-means of :func:`nfpf.core.kernels.kmeans` (full Lloyd in float32 from k-means++,
        also where the CPU path would use ``MiniBatchKMeans``; ``n_init="auto"`` is one
        restart) and the typicality's kNN on the GPU. Given the same clusters the picks are
        the CPU path's; with ``KMeans`` on the CPU (K <= ``minibatch_above``) the clusters
        are the same up to float32 rounding, above it they differ as under another seed.
        ``"auto"``: the GPU when one is visible.

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
        distance: str = "squared",
        normalize: bool = True,
        minibatch_above: int = 50,
        batch_size: int = 5000,
        n_init: int | str = "auto",
        typicality_subset: int | None = None,
        device: str = "auto",
    ):
        check_typiclust_options(max_clusters, min_cluster_size, k_neighbors, distance,
                                normalize, minibatch_above, batch_size)
        if n_init != "auto" and (isinstance(n_init, bool) or not float(n_init).is_integer()
                                 or int(n_init) < 1):
            raise ValueError(f"n_init must be 'auto' or an integer >= 1; got {n_init!r}.")
        self.max_clusters = int(max_clusters)
        self.min_cluster_size = int(min_cluster_size)
        self.k_neighbors = int(k_neighbors)
        self.distance = distance
        self.normalize = bool(normalize)
        self.minibatch_above = int(minibatch_above)
        self.batch_size = int(batch_size)
        self.n_init = n_init if n_init == "auto" else int(n_init)
        if typicality_subset is not None and (
                isinstance(typicality_subset, bool) or not float(typicality_subset).is_integer()
                or int(typicality_subset) < 2):
            raise ValueError(f"typicality_subset must be an integer >= 2 or None; got "
                             f"{typicality_subset!r}.")
        self.typicality_subset = None if typicality_subset is None else int(typicality_subset)
        self.device = nfpf_device.check_device(device)

    def _cluster(self, X: np.ndarray, n_clusters: int, seed: int,
                 on_device: torch.Tensor | None = None) -> np.ndarray:
        """K-means labels; on the GPU path from ``on_device``, X's copy on the device."""
        if n_clusters == 1:
            return np.zeros(len(X), dtype=np.int64)
        if on_device is not None:
            n_init = 1 if self.n_init == "auto" else self.n_init
            km = kernels.kmeans(on_device, n_clusters, n_init=n_init, seed=seed,
                                device=on_device.device)
            return km.labels.cpu().numpy()
        if n_clusters > self.minibatch_above:
            km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=self.batch_size,
                                 n_init=self.n_init, random_state=seed)
        else:
            km = KMeans(n_clusters=n_clusters, n_init=self.n_init, random_state=seed)
        return km.fit_predict(X).astype(np.int64)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        X = as_float_array(pool.features)
        n_zero_rows = 0
        if self.normalize:
            n_zero_rows = int((~X.any(axis=1)).sum())
            X = l2_normalize(X)
        n_clusters = min(budget, self.max_clusters)
        log.info("typiclust: clustering %d samples into %d clusters", pool.n, n_clusters)
        with nfpf_device.gpu_memory_guard("typiclust", "selector.typicality_subset"):
            # One copy of the pool on the device, for the k-means and every pick's kNN.
            on_device = None if gpu is None else kernels.as_device_tensor(X, gpu)
            labels = self._cluster(X, n_clusters, seed, on_device)
        self.cluster_labels_ = labels
        sizes = np.bincount(labels, minlength=n_clusters)
        usable = sizes > self.min_cluster_size
        dropped = (sizes > 0) & ~usable
        messages: list[str] = []
        if dropped.any():
            messages.append(
                f"typiclust: {int(dropped.sum())} of {int((sizes > 0).sum())} K-means clusters "
                f"({int(sizes[dropped].sum())} of {pool.n} samples) have <= "
                f"min_cluster_size={self.min_cluster_size} samples and get no pick while larger "
                f"clusters remain; their picks go to second picks of the largest clusters "
                f"(B={budget}). Set min_cluster_size=0 to give every cluster a pick.")
            log.warning(messages[-1])
        with nfpf_device.gpu_memory_guard("typiclust", "selector.typicality_subset"):
            selected, fallback_at, subsampled = self._pick(X, labels, sizes, usable, budget,
                                                           seed, on_device)
        self.info_ = {
            "n_clusters": int(n_clusters),
            "n_nonempty_clusters": int((sizes > 0).sum()),
            "n_usable_clusters": int(usable.sum()),
            "n_dropped_clusters": int(dropped.sum()),
            "small_cluster_fallback_at": fallback_at,
            "typicality_subsampled_picks": subsampled,
            "n_zero_rows": n_zero_rows,
            "warnings": messages,
        }
        if gpu is not None:
            self.info_["device"] = str(gpu)
        return selected

    def _pick(self, X: np.ndarray, labels: np.ndarray, sizes: np.ndarray, usable: np.ndarray,
              budget: int, seed: int, on_device: torch.Tensor | None = None,
              ) -> tuple[np.ndarray, int | None, int]:
        """The picks; when the usable clusters ran out (or None); how many were subsampled.

        ``on_device``: X's copy on the GPU; each pick then gathers its cluster's rows there
        and only the cluster's kNN distances come back.
        """
        # Members of every cluster, as index arrays (one stable sort, no loop over samples).
        order = np.argsort(labels, kind="stable")
        members = np.split(order, np.cumsum(sizes)[:-1])
        remaining = sizes.copy()
        picks_per_cluster = np.zeros(sizes.size, dtype=np.int64)
        available = np.ones(len(X), dtype=bool)
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
                if on_device is None:
                    rows = X[idx]
                else:
                    rows = on_device[torch.from_numpy(idx).to(on_device.device)]
                typicality = knn_density(rows, k, squared=self.distance == "squared",
                                         device=None if on_device is None else on_device.device)
                pick = int(idx[np.argmax(typicality)])
            selected[t] = pick
            available[pick] = False
            remaining[cluster] -= 1
            picks_per_cluster[cluster] += 1
        return selected, fallback_at, subsampled
