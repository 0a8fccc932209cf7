"""TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): typical samples of K-means clusters."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from nfpf.baselines.neighbors import as_float_array, knn_density, l2_normalize
from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.selection import Pool, Selector, check_choice, check_param

__all__ = ["DISTANCES", "TypiClust", "check_typiclust_options", "typical_picks"]

log = logging.getLogger(__name__)

#: Values of ``distance``: the released code's squared distances, the paper's distances.
DISTANCES = ("squared", "euclidean")


def check_typiclust_options(estimator: Any, prefix: str = "") -> None:
    """Validate the options TypiClust and its active-learning form share, read from
    ``estimator``; each message names ``prefix`` + the option (e.g.
    ``"selector.k_neighbors"``)."""
    for name, low in (("max_clusters", 1), ("min_cluster_size", 0), ("k_neighbors", 1),
                      ("minibatch_above", 0), ("batch_size", 1)):
        check_param(prefix + name, getattr(estimator, name), low=low)
    check_choice(prefix + "distance", estimator.distance, DISTANCES,
                 " ('squared': the released code, 'euclidean': the paper)")
    if not isinstance(estimator.normalize, bool | np.bool_):
        raise ValueError(f"{prefix}normalize must be true or false; got "
                         f"{estimator.normalize!r}.")


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
    index) is :mod:`nfpf.baselines.neighbors`'.

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
        all-zero row is left at the origin (:func:`nfpf.baselines.neighbors.l2_normalize`);
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
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.k_neighbors = k_neighbors
        self.distance = distance
        self.normalize = normalize
        self.minibatch_above = minibatch_above
        self.batch_size = batch_size
        self.n_init = n_init
        self.typicality_subset = typicality_subset
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        check_typiclust_options(self)
        check_param("n_init", self.n_init, low=1, also=("auto",))
        check_param("typicality_subset", self.typicality_subset, low=2, also=(None,),
                    hint=" (None: exact)")
        nfpf_device.check_device(self.device)

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
            labels = kernels.kmeans_labels(
                X if on_device is None else on_device, n_clusters, seed, n_init=self.n_init,
                minibatch_above=self.minibatch_above, batch_size=self.batch_size, device=gpu)
        self.cluster_labels_ = labels
        sizes = np.bincount(labels, minlength=n_clusters)
        usable = sizes > self.min_cluster_size
        dropped = (sizes > 0) & ~usable
        messages = [self._dropped_warning(sizes, dropped, budget)] if dropped.any() else []
        for message in messages:
            log.warning(message)
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

    def _dropped_warning(self, sizes: np.ndarray, dropped: np.ndarray, budget: int) -> str:
        """What the size rule costs: the clusters it leaves without a pick."""
        return (f"typiclust: {int(dropped.sum())} of {int((sizes > 0).sum())} K-means clusters "
                f"({int(sizes[dropped].sum())} of {int(sizes.sum())} samples) have <= "
                f"min_cluster_size={self.min_cluster_size} samples and get no pick while larger "
                f"clusters remain; their picks go to second picks of the largest clusters "
                f"(B={budget}). Set min_cluster_size=0 to give every cluster a pick.")

    def _pick(self, X: np.ndarray, labels: np.ndarray, sizes: np.ndarray, usable: np.ndarray,
              budget: int, seed: int, on_device: torch.Tensor | None = None,
              ) -> tuple[np.ndarray, int | None, int]:
        """The picks; when the usable clusters ran out (or None); how many were subsampled."""
        return typical_picks(X, labels, sizes, usable, budget, k_neighbors=self.k_neighbors,
                             squared=self.distance == "squared",
                             typicality_subset=self.typicality_subset,
                             rng=np.random.default_rng(seed), on_device=on_device)


def typical_picks(X: np.ndarray, labels: np.ndarray, sizes: np.ndarray, usable: np.ndarray,
                  size: int, *, k_neighbors: int, squared: bool,
                  labelled: np.ndarray | None = None, typicality_subset: int | None = None,
                  rng: np.random.Generator | None = None,
                  on_device: torch.Tensor | None = None) -> tuple[np.ndarray, int | None, int]:
    """TypiClust's pick loop: ``size`` typical samples of the least-covered clusters.

    Each pick takes, among the ``usable`` clusters with an unlabelled, unpicked sample (all
    such clusters once the usable ones run out), the one with the fewest labelled-or-picked
    samples (ties: the largest, then the lowest id), and from it the sample of highest
    typicality, 1 / mean (squared, ``squared``) distance to its
    ``k = min(k_neighbors, m // 2)`` nearest of the cluster's m available samples.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,)
        Cluster of every sample; ``sizes`` its counts, ``usable`` the clusters large enough.
    size : int
    labelled : ndarray of int, optional
        Samples already labelled: they cover their clusters and are never picked.
    typicality_subset : int, optional
        Compute a pick's typicality among this many of the cluster's samples, drawn from
        ``rng`` (bounded mode).
    on_device : Tensor, optional
        X's copy on a GPU: each pick gathers its cluster's rows there.

    Returns
    -------
    picks : ndarray of shape (size,), int64
    fallback_at : int or None
        The pick at which the usable clusters ran out.
    subsampled : int
        How many picks used ``typicality_subset``.
    """
    labelled = np.empty(0, dtype=np.int64) if labelled is None else labelled
    # Members of every cluster, as index arrays (one stable sort, no loop over samples).
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])
    covered = np.bincount(labels[labelled], minlength=sizes.size)
    available = np.ones(len(X), dtype=bool)
    available[labelled] = False
    remaining = np.bincount(labels[available], minlength=sizes.size)
    picks = np.empty(size, dtype=np.int64)
    fallback_at = None
    subsampled = 0
    for t in range(size):
        eligible = usable & (remaining > 0)
        if not eligible.any():
            if fallback_at is None:
                fallback_at = t
                log.info("typiclust: all %d usable clusters exhausted after %d picks; using "
                         "the small clusters", int(usable.sum()), t)
            eligible = remaining > 0
        candidates = np.flatnonzero(eligible)
        # Fewest picks first, then the largest cluster, then the lowest id.
        cluster = int(candidates[np.lexsort((candidates, -sizes[candidates],
                                             covered[candidates]))[0]])
        idx = members[cluster][available[members[cluster]]]
        if typicality_subset is not None and idx.size > typicality_subset:
            idx = np.sort(rng.choice(idx, size=typicality_subset, replace=False))
            subsampled += 1
        picks[t] = _most_typical(X, idx, k_neighbors, squared, on_device)
        available[picks[t]] = False
        remaining[cluster] -= 1
        covered[cluster] += 1
    return picks, fallback_at, subsampled


def _most_typical(X: np.ndarray, idx: np.ndarray, k_neighbors: int, squared: bool,
                  on_device: torch.Tensor | None) -> int:
    """The sample of ``idx`` of highest typicality among them (first on ties)."""
    if idx.size == 1:
        return int(idx[0])
    k = max(1, min(k_neighbors, idx.size // 2))
    rows = X[idx] if on_device is None else on_device[torch.from_numpy(idx).to(on_device.device)]
    typicality = knn_density(rows, k, squared=squared,
                             device=None if on_device is None else on_device.device)
    return int(idx[np.argmax(typicality)])
