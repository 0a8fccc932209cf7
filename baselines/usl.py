"""USL (Wang, Lian, Yu, ECCV 2022): unsupervised selective labeling by regularised density."""

from __future__ import annotations

import logging
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_memory

from nfpf.baselines.neighbors import as_float_array, auto_chunk_size, knn_density, l2_normalize
from nfpf.core import kernels
from nfpf.core.memo import Memo
from nfpf.core.selection import Pool, SubsetSelector, check_choice, check_param

__all__ = ["USL", "usl_regularizer"]

log = logging.getLogger(__name__)


class USL(SubsetSelector):
    """K-means with B clusters; per cluster the densest sample away from other clusters' picks.

    Density is the kNN density ``1 / mean squared distance to the k nearest other samples``
    (squared, as the released code's kNN returns squared distances; see
    :mod:`nfpf.baselines.neighbors`). Selection is refined for ``n_iters`` rounds: round 0 takes
    each cluster's densest sample; after each round the regulariser

        R_new(x) = sum over picks s of other clusters with ||x - s||^2 < horizon_dist
                   of 1 / (||x - s||^2)^alpha

    is blended into ``R <- momentum R + (1 - momentum) R_new``, and the next round takes, in
    every cluster, ``argmax density(x) - w R(x)``. The picks of the last round are returned,
    in cluster order. These are the released code's rule and defaults
    (``get_selection_with_reg``: 10 rounds, w = 0.5, momentum = 0.9, alpha = 0.5,
    horizon 4 in squared distance, k = 400 on CIFAR-10).

    Parameters
    ----------
    k : int
        Neighbours of the density (paper: 400 on CIFAR). Capped at n - 1 on smaller pools,
        with a warning and ``info_["k"]`` recording the value used.
    n_iters : int
        Selection rounds (1: no regularisation).
    w : float
        Weight of the regulariser.
    momentum : float
        Weight of the previous regulariser, in [0, 1).
    alpha : float
        Exponent of the squared distance in the regulariser (> 0).
    horizon_dist : float or None
        Picks at squared distance >= this do not count (None: no horizon).
    normalize : bool
        L2-normalise the features first. The released code works on unit-norm
        self-supervised embeddings, where its horizon (4 = the largest squared distance) and
        the balance between density and regulariser were set; on other features keep it on.
    minibatch_above : int or None
        Use ``MiniBatchKMeans`` when B exceeds this (None: always ``KMeans``). The released
        code runs plain Lloyd iterations; MiniBatch above 500 clusters keeps large budgets fast.
    kmeans_max_iter : int
        K-means iterations (released code: 200).
    n_init : int or "auto"
        K-means restarts.
    max_candidates : int or None, default=None
        Bounded mode: largest pool used whole; above it a seeded random candidate subset of
        ``max(max_candidates, budget)`` samples (see below). None: never subsample.
    chunk_size : int, optional
        Rows per distance block.
    memory : str, joblib.Memory or None, default=None
        Where to cache the kNN density, which depends on neither the budget nor the seed:
        a sweep computes it once per pool (:class:`nfpf.core.memo.Memo`; ``nfpf-run`` passes
        its cache). The picks are identical with or without it; ``info_["memory_hits"]``
        says whether it was reused.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``"cpu"``: the reference path (scikit-learn K-means, CPU kNN). A GPU: the kNN
        density (:func:`nfpf.core.kernels.knn`, float32), the K-means
        (:func:`nfpf.core.kernels.kmeans`:
        full Lloyd from k-means++, also where the CPU path would use ``MiniBatchKMeans``;
        ``n_init="auto"`` is one restart) and the regulariser run there. The density and the
        regulariser are the CPU path's arithmetic, so given the same clusters the picks are
        the same; with ``KMeans`` on the CPU (B <= ``minibatch_above``) the clusters are the
        same up to float32 rounding, above it they differ as under another seed. ``"auto"``:
        the GPU when one is visible.

    Time O(n^2 d) for the density, O(n B d iterations) for K-means and O(n_iters n B d) for
    the regulariser. Memory O(n k + chunk_size * max(n, B)).

    Bounded mode (``max_candidates``): on pools larger than ``max_candidates`` the whole
    method runs on a seeded random subset of m = max(max_candidates, B) samples: the
    density's O(n^2 d) becomes O(m^2 d). Changes the result when it bites
    (``info_["candidate_subset"]``); identical otherwise.
    """

    def __init__(
        self,
        k: int = 400,
        n_iters: int = 10,
        w: float = 0.5,
        momentum: float = 0.9,
        alpha: float = 0.5,
        horizon_dist: float | None = 4.0,
        normalize: bool = True,
        minibatch_above: int | None = 500,
        kmeans_max_iter: int = 200,
        n_init: int | str = "auto",
        chunk_size: int | None = None,
        max_candidates: int | None = None,
        memory: Any = None,
        device: str = "auto",
    ):
        self.k = k
        self.n_iters = n_iters
        self.w = w
        self.momentum = momentum
        self.alpha = alpha
        self.horizon_dist = horizon_dist
        self.normalize = normalize
        self.minibatch_above = minibatch_above
        self.kmeans_max_iter = kmeans_max_iter
        self.n_init = n_init
        self.chunk_size = chunk_size
        self.max_candidates = max_candidates
        self.memory = memory
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        super().check_params()
        for name in ("k", "n_iters", "kmeans_max_iter"):
            check_param(name, getattr(self, name), low=1)
        check_param("w", self.w, Real, low=0)
        check_param("momentum", self.momentum, Real, low=0, high=1, closed="left")
        check_param("alpha", self.alpha, Real, low=0, closed="neither")
        check_param("horizon_dist", self.horizon_dist, Real, low=0, closed="neither",
                    also=(None,), hint=" (None: no horizon)")
        check_choice("normalize", self.normalize, (True, False))
        check_param("minibatch_above", self.minibatch_above, low=0, also=(None,))
        check_param("n_init", self.n_init, low=1, also=("auto",))
        check_param("chunk_size", self.chunk_size, low=1, also=(None,))
        check_memory(self.memory)  # a directory, a joblib.Memory or None

    def _select_all(self, pool: Pool, budget: int, seed: int,
                    gpu: torch.device | None = None) -> np.ndarray:
        X = as_float_array(pool.features)
        if self.normalize:
            X = l2_normalize(X)
        n = pool.n
        k = min(self.k, n - 1)
        if k < self.k:
            log.warning("usl: k=%d neighbours but the pool has %d samples; using k=%d",
                        self.k, n, k)
        memo = Memo(self.memory)
        density = (memo.call("knn_density", knn_density, X,
                             params=dict(k=k, squared=True, chunk_size=self.chunk_size,
                                         device=None if gpu is None else str(gpu)))
                   if k >= 1 else np.ones(n))
        labels = kernels.kmeans_labels(X, budget, seed, n_init=self.n_init,
                                       max_iter=self.kmeans_max_iter,
                                       minibatch_above=self.minibatch_above, device=gpu)
        X_regularizer = X if gpu is None else torch.from_numpy(X).to(gpu)  # moved once
        self.cluster_labels_ = labels
        regularizer = np.zeros(n)
        selected = np.empty(0, dtype=np.int64)
        for it in range(self.n_iters):
            selected = _per_cluster_argmax(density - self.w * regularizer, labels)
            if it + 1 < self.n_iters:
                new = usl_regularizer(X_regularizer, selected, labels, alpha=self.alpha,
                                      horizon_dist=self.horizon_dist,
                                      chunk_size=self.chunk_size)
                regularizer = self.momentum * regularizer + (1.0 - self.momentum) * new
                self.history_.append({"round": it, "mean_regularizer": float(regularizer.mean())})
        n_filled = budget - selected.size
        if n_filled:
            # K-means left clusters empty (duplicate samples): fill with the best remaining.
            score = density - self.w * regularizer
            score[selected] = -np.inf
            extra = np.argsort(-score, kind="stable")[:n_filled]
            selected = np.concatenate([selected, extra])
            log.info("usl: %d empty clusters; filled with the highest-scoring samples", n_filled)
        self.info_ = {"k": int(k), "n_clusters": int(budget),
                      "n_empty_clusters": int(n_filled), "memory_hits": list(memo.hits)}
        return selected


def _per_cluster_argmax(score: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each non-empty cluster (ascending id), the index of its highest score.

    Ties go to the lowest index.
    """
    # Sort by (cluster, -score, index): the first entry of each cluster is its argmax.
    order = np.lexsort((np.arange(score.size), -score, labels))
    first = np.r_[0, np.flatnonzero(np.diff(labels[order])) + 1]
    return order[first].astype(np.int64)


def usl_regularizer(
    X: np.ndarray,
    selected: np.ndarray,
    labels: np.ndarray,
    *,
    alpha: float = 0.5,
    horizon_dist: float | None = 4.0,
    chunk_size: int | None = None,
) -> np.ndarray:
    """USL's inter-cluster regulariser of every sample.

    ``R(x_i) = sum_j [labels[s_j] != labels[i]] [d_ij < horizon] / d_ij^alpha`` with
    ``d_ij = ||x_i - x_{s_j}||^2`` (a zero distance counts as 1e-12).

    Parameters
    ----------
    X : ndarray or Tensor of shape (n, d)
        A tensor is used where it lives (e.g. on a GPU).
    selected : ndarray of shape (B,)
    labels : ndarray of shape (n,)
    alpha, horizon_dist : float
    chunk_size : int, optional
        Rows per (rows, B) distance block.

    Returns
    -------
    ndarray of shape (n,), float64

    Time O(n B d); memory O(chunk_size * B).
    """
    Xt = X if isinstance(X, torch.Tensor) else torch.from_numpy(as_float_array(X))
    device = Xt.device
    S = Xt[torch.as_tensor(np.asarray(selected, dtype=np.int64), device=device)]
    s_lab = torch.from_numpy(labels[selected]).to(device)
    lab = torch.from_numpy(labels).to(device)
    n = Xt.shape[0]
    chunk = chunk_size or auto_chunk_size(max(1, S.shape[0]), Xt.element_size(), 4 * 2**20)
    out = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        rows = Xt[start:start + chunk]
        d = kernels.center_distances(rows, S, squared=True, batch_size=len(rows), dtype=None)
        d.clamp_min_(1e-12)
        ignore = lab[start:start + chunk, None] == s_lab[None, :]
        if horizon_dist is not None:
            ignore |= d >= horizon_dist
        term = d.pow_(-alpha).masked_fill_(ignore, 0.0)
        out[start:start + chunk] = term.sum(dim=1, dtype=torch.float64)
    return out.cpu().numpy()
