"""USL (Wang, Lian, Yu, ECCV 2022): unsupervised selective labeling by regularised density."""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch
from nfpf.baselines._neighbors import as_float_array, auto_chunk_size, knn_density, l2_normalize
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.utils.validation import check_memory

from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.memo import Memo
from nfpf.core.selection import Pool, Selector, select_on_subset

__all__ = ["USL", "usl_regularizer"]

log = logging.getLogger(__name__)


class USL(Selector):
    """K-means with B clusters; per cluster the densest sample away from other clusters' picks.

    Density is the kNN density ``1 / mean squared distance to the k nearest other samples``
    (squared, as the released code's kNN returns squared distances; see
    :mod:`nfpf.baselines._neighbors`). Selection is refined for ``n_iters`` rounds: round 0 takes
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
        for name, value, low in (("k", k, 1), ("n_iters", n_iters, 1),
                                 ("kmeans_max_iter", kmeans_max_iter, 1)):
            if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if float(w) < 0:
            raise ValueError(f"w must be >= 0; got {w!r}.")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}.")
        if float(alpha) <= 0:
            raise ValueError(f"alpha must be > 0; got {alpha!r}.")
        if horizon_dist is not None and float(horizon_dist) <= 0:
            raise ValueError(f"horizon_dist must be > 0 or None; got {horizon_dist!r}.")
        if minibatch_above is not None and int(minibatch_above) < 0:
            raise ValueError(f"minibatch_above must be >= 0 or None; got {minibatch_above!r}.")
        if n_init != "auto" and int(n_init) < 1:
            raise ValueError(f"n_init must be 'auto' or an integer >= 1; got {n_init!r}.")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 or None; got {chunk_size!r}.")
        self.k = int(k)
        self.n_iters = int(n_iters)
        self.w = float(w)
        self.momentum = float(momentum)
        self.alpha = float(alpha)
        self.horizon_dist = None if horizon_dist is None else float(horizon_dist)
        self.normalize = bool(normalize)
        self.minibatch_above = None if minibatch_above is None else int(minibatch_above)
        self.kmeans_max_iter = int(kmeans_max_iter)
        self.n_init = n_init if n_init == "auto" else int(n_init)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.max_candidates = _check_max_candidates(max_candidates)
        check_memory(memory)  # a directory, a joblib.Memory or None
        self.memory = memory
        self.device = nfpf_device.check_device(device)

    def _cluster(self, X: np.ndarray, budget: int, seed: int,
                 gpu: torch.device | None = None) -> np.ndarray:
        if budget == 1:
            return np.zeros(len(X), dtype=np.int64)
        if gpu is not None:
            km = kernels.kmeans(X, budget, n_init=1 if self.n_init == "auto" else self.n_init,
                                max_iter=self.kmeans_max_iter, seed=seed, device=gpu)
            return km.labels.cpu().numpy()
        if self.minibatch_above is not None and budget > self.minibatch_above:
            km = MiniBatchKMeans(n_clusters=budget, n_init=self.n_init, random_state=seed,
                                 max_iter=self.kmeans_max_iter, batch_size=max(1024, 3 * budget))
        else:
            km = KMeans(n_clusters=budget, n_init=self.n_init, max_iter=self.kmeans_max_iter,
                        random_state=seed)
        return km.fit_predict(X).astype(np.int64)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        with nfpf_device.gpu_memory_guard("usl", "selector.chunk_size"):
            picks, size = select_on_subset(pool, budget, seed, self.max_candidates, "usl",
                                           functools.partial(self._select_all, gpu=gpu))
        self.info_["candidate_subset"] = size
        if gpu is not None:
            self.info_["device"] = str(gpu)
        return picks

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
        labels = self._cluster(X, budget, seed, gpu)
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
    s_sq = (S * S).sum(dim=1)
    s_lab = torch.from_numpy(labels[selected]).to(device)
    lab = torch.from_numpy(labels).to(device)
    n = Xt.shape[0]
    chunk = chunk_size or auto_chunk_size(max(1, S.shape[0]), Xt.element_size(), 4 * 2**20)
    out = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        rows = Xt[start:start + chunk]
        d = (rows * rows).sum(dim=1)[:, None] - 2.0 * rows @ S.T + s_sq[None, :]
        d.clamp_min_(1e-12)
        ignore = lab[start:start + chunk, None] == s_lab[None, :]
        if horizon_dist is not None:
            ignore |= d >= horizon_dist
        term = d.pow_(-alpha).masked_fill_(ignore, 0.0)
        out[start:start + chunk] = term.sum(dim=1, dtype=torch.float64)
    return out.cpu().numpy()


def _check_max_candidates(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise ValueError(f"max_candidates must be a positive integer or None (never "
                         f"subsample); got {value!r}.")
    return int(value)
