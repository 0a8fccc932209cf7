"""Torch kernels of the selectors' GPU paths: k-means, k nearest neighbours, nearest samples.

Every function runs on the device its input lives on (or the ``device`` it is given), CPU
included, so the tests exercise the same code the GPU runs. Distances are computed block by
block as ``|x|^2 + |c|^2 - 2 x.c`` in float32, so memory is O(rows_per_block * columns) and an
``n x n`` (or ``n x K``) matrix is never formed unless asked for.

Randomness (the k-means++ draws) comes from a CPU ``numpy.random.RandomState`` seeded by
``seed``, drawn in scikit-learn's order (so a k-means++ init starts from the same random
numbers as ``KMeans(random_state=seed)``'s), and does not depend on the device; the picks
may still differ between devices where the float32 arithmetic does (summation order of the
matrix products).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin_min

from nfpf.core.selection import check_whole

__all__ = ["KMeansResult", "as_device_tensor", "center_distances", "check_k", "fit_kmeans",
           "kmeans", "kmeans_labels", "kmeans_plusplus", "knn", "nearest_distinct",
           "nearest_distinct_exact", "resolve_n_init", "sq_distances_to"]

log = logging.getLogger(__name__)

#: Float32 entries of one distance block when no batch size is given (256 MB).
BLOCK_ELEMENTS = 2**26


@dataclass
class KMeansResult:
    """The best k-means restart.

    Attributes
    ----------
    centers : Tensor of shape (K, d), float32
        Cluster centres, on the computing device.
    labels : Tensor of shape (n,), int64
        Index of each sample's nearest centre.
    inertia : float
        Sum of squared distances of the samples to their centre (float64 sum).
    n_iter : int
        Lloyd iterations of the best restart.
    """

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int


def as_device_tensor(X: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``X`` as a ``dtype`` (float32) tensor on ``device`` (default: X's device, the CPU for
    arrays)."""
    if isinstance(X, torch.Tensor):
        return X.to(device=device or X.device, dtype=dtype)
    X = np.asarray(X)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if X.dtype != np_dtype or not X.flags.c_contiguous or not X.flags.writeable:
        X = np.array(X, dtype=np_dtype, order="C")  # torch cannot wrap read-only memory
    return torch.from_numpy(X).to(device or "cpu")


def _rows_per_block(n_columns: int, batch_size: int | None) -> int:
    if batch_size is not None:
        return max(1, int(batch_size))
    return max(1, BLOCK_ELEMENTS // max(1, n_columns))


def _sq_distances(block: torch.Tensor, block_sq: torch.Tensor, centers: torch.Tensor,
                  centers_sq: torch.Tensor) -> torch.Tensor:
    """Squared distances (rows, K) of a block of rows to the centres, clamped at 0."""
    d = torch.addmm(centers_sq[None, :], block, centers.T, beta=1.0, alpha=-2.0)
    return d.add_(block_sq[:, None]).clamp_min_(0.0)


def sq_distances_to(X: torch.Tensor, x_sq: torch.Tensor, y: torch.Tensor, chunk: int,
                    ) -> torch.Tensor:
    """Squared Euclidean distances (n,) from every row of ``X`` to the single row ``y``.

    ``x_sq`` holds the rows' squared norms; computed ``chunk`` rows at a time as
    ``|x|^2 - 2 x.y + |y|^2``, clamped at 0, so no (n, d) temporary is formed.
    """
    out = torch.empty(X.shape[0], dtype=torch.promote_types(X.dtype, x_sq.dtype),
                      device=X.device)
    y_sq = (y * y).sum()
    for start in range(0, X.shape[0], chunk):
        block = X[start:start + chunk]
        d = x_sq[start:start + chunk] - 2.0 * (block @ y) + y_sq
        out[start:start + chunk] = d.clamp_min_(0.0)
    return out


def center_distances(X: np.ndarray | torch.Tensor, centers: np.ndarray | torch.Tensor, *,
                     squared: bool = False, batch_size: int | None = None,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """Euclidean distances of every sample to every centre.

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    centers : array or Tensor of shape (K, d)
    squared : bool
        Return squared distances.
    batch_size : int, optional
        Rows of ``X`` per distance block (default: blocks of about 256 MB).
    device : torch device, optional
        Where to compute (default: X's device).
    dtype : torch dtype or None
        Precision of the arithmetic; ``None``: X's (float64 stays float64, anything else is
        float32).

    Returns
    -------
    Tensor of shape (n, K), on the computing device.
    """
    if dtype is None:
        dtype = torch.float64 if X.dtype in (np.float64, torch.float64) else torch.float32
    X = as_device_tensor(X, device, dtype)
    C = as_device_tensor(centers, X.device, dtype)
    c_sq = (C * C).sum(dim=1)
    step = _rows_per_block(C.shape[0], batch_size)
    if step >= X.shape[0]:  # one block: no copy into an output matrix
        out = _sq_distances(X, (X * X).sum(dim=1), C, c_sq)
    else:
        out = torch.empty((X.shape[0], C.shape[0]), dtype=dtype, device=X.device)
        for start in range(0, X.shape[0], step):
            block = X[start:start + step]
            out[start:start + step] = _sq_distances(block, (block * block).sum(dim=1), C, c_sq)
    return out if squared else out.sqrt_()


def _assign(X: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, step: int,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row and its squared distance (first index on ties)."""
    c_sq = (centers * centers).sum(dim=1)
    labels = torch.empty(X.shape[0], dtype=torch.int64, device=X.device)
    min_sq = torch.empty(X.shape[0], dtype=torch.float32, device=X.device)
    for start in range(0, X.shape[0], step):
        stop = start + step
        d = _sq_distances(X[start:stop], x_sq[start:stop], centers, c_sq)
        min_sq[start:stop], labels[start:stop] = d.min(dim=1)
    return labels, min_sq


def _cluster_sums(X: torch.Tensor, labels: torch.Tensor, n_clusters: int, step: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster float64 sums of the rows and counts.

    A one-hot matrix product rather than ``index_add_``: CUDA's ``index_add_`` adds with
    atomics in a varying order, which would make the centres, hence the picks, vary between
    runs with the same seed.
    """
    sums = torch.zeros((n_clusters, X.shape[1]), dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], step):
        rows = labels[start:start + step]
        one_hot = torch.zeros((n_clusters, rows.shape[0]), dtype=X.dtype, device=X.device)
        one_hot.scatter_(0, rows[None, :], 1.0)
        sums += torch.mm(one_hot, X[start:start + step]).double()
    counts = torch.bincount(labels, minlength=n_clusters)
    return sums, counts


def kmeans_plusplus(X: np.ndarray | torch.Tensor, n_clusters: int, *,
                    seed: int | np.random.RandomState = 0,
                    device: torch.device | str | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (scikit-learn's: ``2 + ln K`` candidates per centre).

    The first centre is uniform; each next one is the best (lowest resulting potential) of
    ``2 + int(ln K)`` candidates drawn with probability proportional to the squared distance
    to the nearest centre so far. The uniform draws come from ``numpy``'s generator (on the
    CPU), the distances from torch on the computing device.

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    n_clusters : int, 1 <= n_clusters <= n
    seed : int or numpy RandomState
        Drawn as scikit-learn's ``_kmeans_plusplus`` draws from ``random_state``: one
        ``choice`` for the first centre, then ``uniform(size=n_trials)`` per centre.
    device : torch device, optional
        Where to compute (default: X's device).

    Returns
    -------
    ndarray of shape (n_clusters,), int64: the rows of ``X`` chosen as initial centres.

    Time O(n K d log K); memory O(n log K).
    """
    X = as_device_tensor(X, device)
    n = X.shape[0]
    n_clusters = _check_clusters(n_clusters, n)
    rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    x_sq = (X * X).sum(dim=1)
    n_trials = 2 + int(np.log(n_clusters))
    chosen = np.empty(n_clusters, dtype=np.int64)
    weights = np.ones(n, dtype=np.float32)  # scikit-learn's unit sample weights
    chosen[0] = first = rng.choice(n, p=weights / weights.sum())
    closest = _sq_distances(X, x_sq, X[first:first + 1], x_sq[first:first + 1])[:, 0]
    potential = float(closest.double().sum())
    for c in range(1, n_clusters):
        targets = torch.as_tensor(rng.uniform(size=n_trials) * potential, device=X.device)
        cumulative = torch.cumsum(closest.double(), dim=0)
        candidates = torch.searchsorted(cumulative, targets).clamp_(max=n - 1)
        to_candidates = _sq_distances(X[candidates], x_sq[candidates], X, x_sq)
        torch.minimum(to_candidates, closest[None, :], out=to_candidates)
        potentials = to_candidates.double().sum(dim=1)
        best = int(torch.argmin(potentials))
        potential = float(potentials[best])
        closest = to_candidates[best]
        chosen[c] = int(candidates[best])
    return chosen


def _check_clusters(n_clusters: int, n: int) -> int:
    return check_whole("n_clusters", n_clusters, low=1, high=n, hint=" (the pool size)")


def resolve_n_init(n_init: int | str) -> int:
    """Restarts of a k-means++ k-means: ``"auto"`` is one, as scikit-learn's ``KMeans``
    resolves it for a k-means++ init."""
    restarts = check_whole("n_init", n_init, low=1, also=("auto",))
    return 1 if restarts == "auto" else restarts


def kmeans(X: np.ndarray | torch.Tensor, n_clusters: int, *, n_init: int | str = 1,
           max_iter: int = 300, seed: int = 0, tol: float = 1e-4,
           batch_size: int | None = None, device: torch.device | str | None = None,
           init: np.ndarray | torch.Tensor | None = None) -> KMeansResult:
    """Lloyd's k-means in float32 torch, best of ``n_init`` k-means++ restarts.

    Follows scikit-learn's ``KMeans(algorithm="lloyd")``: the data are centred on their mean
    first (for float32 precision), a restart stops when no label changes or when the centres
    move by at most ``tol * mean(var(X, axis=0))`` in total squared distance, the labels are
    then recomputed against the final centres, and an empty cluster is moved to the sample
    farthest from its centre. Given the same initial centres it returns scikit-learn's
    labels and centres up to float32 rounding (tested).

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    n_clusters : int, 1 <= n_clusters <= n
    n_init : int or "auto"
        Restarts; the one with the lowest inertia is kept (ignored when ``init`` is given).
        ``"auto"``: one (:func:`resolve_n_init`).
    max_iter : int
        Lloyd iterations per restart.
    seed : int
        Seeds one ``numpy.random.RandomState`` whose draws make every restart's k-means++
        init, in scikit-learn's order: the inits of ``KMeans(random_state=seed)``, up to
        float32 rounding of the distances that weight the draws.
    tol : float
        Relative tolerance on the centres' movement.
    batch_size : int, optional
        Rows per distance block (memory O(batch_size * K)); default: blocks of about 256 MB.
    device : torch device, optional
        Where to compute (default: X's device, the CPU for arrays).
    init : array or Tensor of shape (K, d), optional
        Initial centres (one restart) instead of k-means++.

    Returns
    -------
    KMeansResult

    Time O(n_init * max_iter * n * K * d); memory O(n * d) for the centred copy plus
    O(batch_size * K).
    """
    n_init = resolve_n_init(n_init)
    max_iter = check_whole("max_iter", max_iter, low=1)
    X = as_device_tensor(X, device)
    n_clusters = _check_clusters(n_clusters, X.shape[0])
    mean = X.mean(dim=0, dtype=torch.float64)
    Xc = X - mean.float()
    x_sq = (Xc * Xc).sum(dim=1)
    tol_abs = float(Xc.var(dim=0, unbiased=False).mean()) * tol
    step = _rows_per_block(n_clusters, batch_size)
    rng = np.random.RandomState(seed)  # scikit-learn's check_random_state(seed)
    best: KMeansResult | None = None
    for _ in range(1 if init is not None else n_init):
        if init is not None:
            start = as_device_tensor(init, X.device) - mean.float()
        else:
            start = Xc[torch.as_tensor(kmeans_plusplus(Xc, n_clusters, seed=rng),
                                       device=X.device)]
        result = _lloyd(Xc, x_sq, start.clone(), max_iter, tol_abs, step)
        if best is None or result.inertia < best.inertia:
            best = result
    best.centers = (best.centers.double() + mean).float()
    return best


def fit_kmeans(X: np.ndarray | torch.Tensor, n_clusters: int, seed: int, *,
               n_init: int | str = "auto", max_iter: int | None = None,
               minibatch_above: int | None = None, minibatch_max_iter: int | None = None,
               batch_size: int | None = None, device: torch.device | str | None = None,
               ) -> KMeansResult:
    """K-means as the clustering selectors run it: the one choice of algorithm.

    With ``device``: :func:`kmeans` there (full Lloyd). Else scikit-learn:
    ``MiniBatchKMeans`` (``batch_size`` rows per batch, default ``max(1024, 3 K)``) when
    ``n_clusters > minibatch_above``, otherwise ``KMeans``.

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    n_clusters : int
    seed : int
        ``random_state`` of scikit-learn's estimators, ``seed`` of :func:`kmeans`.
    n_init : int or "auto"
    max_iter : int, optional
        Iterations of Lloyd's algorithm (``KMeans`` and :func:`kmeans`); None keeps their
        default (300).
    minibatch_above : int, optional
        Above this many clusters, ``MiniBatchKMeans`` on the CPU (None: never).
    minibatch_max_iter : int, optional
        Epochs of ``MiniBatchKMeans``; None keeps scikit-learn's default (100).
    batch_size : int, optional
        Rows per ``MiniBatchKMeans`` batch.
    device : torch device, optional

    Returns
    -------
    KMeansResult
        On the CPU path: scikit-learn's ``cluster_centers_`` (in X's float precision),
        ``labels_``, ``inertia_`` and ``n_iter_`` as tensors and numbers.
    """
    def iterations(value: int | None) -> dict[str, int]:
        return {} if value is None else {"max_iter": value}

    if device is not None:
        return kmeans(X, n_clusters, n_init=n_init, seed=seed, device=device,
                      **iterations(max_iter))
    if minibatch_above is not None and n_clusters > minibatch_above:
        km = MiniBatchKMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed,
                             batch_size=batch_size or max(1024, 3 * n_clusters),
                             **iterations(minibatch_max_iter))
    else:
        km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed,
                    **iterations(max_iter))
    km.fit(X)
    return KMeansResult(centers=torch.from_numpy(km.cluster_centers_),
                        labels=torch.from_numpy(km.labels_.astype(np.int64)),
                        inertia=float(km.inertia_), n_iter=int(km.n_iter_))


def kmeans_labels(X: np.ndarray | torch.Tensor, n_clusters: int, seed: int, *,
                  n_init: int | str = "auto", max_iter: int | None = None,
                  minibatch_above: int | None = None, batch_size: int | None = None,
                  device: torch.device | str | None = None) -> np.ndarray:
    """The K-means cluster of every row of ``X``, as the clustering selectors run it
    (:func:`fit_kmeans`; ``max_iter`` bounds the mini-batch epochs too, and None keeps each
    algorithm's default). One cluster: all zeros, without a fit.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    if n_clusters == 1:
        return np.zeros(len(X), dtype=np.int64)
    found = fit_kmeans(X, n_clusters, seed, n_init=n_init, max_iter=max_iter,
                       minibatch_above=minibatch_above, minibatch_max_iter=max_iter,
                       batch_size=batch_size, device=device)
    return found.labels.cpu().numpy()


def _lloyd(X: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, max_iter: int,
           tol_abs: float, step: int) -> KMeansResult:
    """One Lloyd run from ``centers`` (scikit-learn's stopping rules)."""
    n_clusters = centers.shape[0]
    labels_old = torch.full((X.shape[0],), -1, dtype=torch.int64, device=X.device)
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        labels, min_sq = _assign(X, x_sq, centers, step)
        sums, counts = _cluster_sums(X, labels, n_clusters, step)
        _relocate_empty(X, labels, min_sq, sums, counts)
        new = (sums / counts.clamp_min(1)[:, None].double()).float()
        empty = counts == 0
        new[empty] = centers[empty]
        shift = float(((new - centers).double() ** 2).sum())
        centers = new
        if torch.equal(labels, labels_old):
            converged = True
            break
        if shift <= tol_abs:
            break
        labels_old = labels
    if not converged:  # labels consistent with the final centres
        labels, min_sq = _assign(X, x_sq, centers, step)
    # inertia from exact differences, not the |x|^2 + |c|^2 - 2 x.c expansion
    inertia = 0.0
    for start in range(0, X.shape[0], step):
        diff = X[start:start + step] - centers[labels[start:start + step]]
        inertia += float((diff.double() ** 2).sum())
    return KMeansResult(centers, labels, inertia, n_iter)


def _relocate_empty(X: torch.Tensor, labels: torch.Tensor, min_sq: torch.Tensor,
                    sums: torch.Tensor, counts: torch.Tensor) -> None:
    """Give each empty cluster one of the samples farthest from their centre (in place)."""
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() == 0:
        return
    far = torch.topk(min_sq, int(empty.numel())).indices
    for cluster, sample in zip(empty.tolist(), far.tolist(), strict=True):  # few clusters
        old = int(labels[sample])
        if counts[old] > 1:
            sums[old] -= X[sample].double()
            counts[old] -= 1
            sums[cluster] = X[sample].double()
            counts[cluster] = 1


def check_k(k: int, n: int) -> int:
    """Validate a number of neighbours for a pool of ``n`` samples and return it as ``int``.

    Each sample has ``n - 1`` neighbours other than itself, so ``1 <= k <= n - 1``.
    """
    k = check_whole("k", k, low=1, hint=" (a number of neighbours)")
    if k > n - 1:
        raise ValueError(f"k must be at most {n - 1}: k={k} is larger than the pool "
                         f"allows (each of the {n} samples has {n - 1} neighbours other than "
                         f"itself). Choose k <= {n - 1}.")
    return k


def knn(X: np.ndarray | torch.Tensor, k: int, *, squared: bool = False,
        chunk_size: int | None = None, device: torch.device | str | None = None,
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest *other* samples of every sample, nearest first.

    The sample itself is excluded by index, so an exact duplicate is a neighbour at
    distance 0 (the convention of the kNN of TypiClust and USL).

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
        Float64 stays float64; any other dtype is computed in float32.
    k : int, 1 <= k <= n - 1
    squared : bool
        Return squared Euclidean distances.
    chunk_size : int, optional
        Rows per distance block (memory O(chunk_size * n)); default: blocks of about 256 MB.
    device : torch device, optional
        Where to compute (default: X's device).

    Returns
    -------
    distances : Tensor of shape (n, k), X's float precision
    indices : Tensor of shape (n, k), int64

    Time O(n^2 d); memory O(chunk_size * n + n * k).
    """
    float64 = X.dtype in (np.float64, torch.float64)
    X = as_device_tensor(X, device, torch.float64 if float64 else torch.float32)
    n = X.shape[0]
    k = check_k(k, n)
    x_sq = (X * X).sum(dim=1)
    out_d = torch.empty((n, k), dtype=X.dtype, device=X.device)
    out_i = torch.empty((n, k), dtype=torch.int64, device=X.device)
    step = _rows_per_block(n, chunk_size)
    n_blocks = -(-n // step)
    for b, start in enumerate(range(0, n, step)):
        stop = min(start + step, n)
        # |x_j|^2 - 2 x_i.x_j ranks row i like the squared distance; |x_i|^2 is added back
        # to the k values kept
        block = torch.addmm(x_sq[None, :], X[start:stop], X.T, beta=1.0, alpha=-2.0)
        block.diagonal(offset=start).fill_(float("inf"))
        values, idx = torch.topk(block, k, dim=1, largest=False, sorted=True)
        out_d[start:stop] = values.add_(x_sq[start:stop, None]).clamp_min_(0.0)
        out_i[start:stop] = idx
        if n_blocks >= 20 and (b + 1) % max(1, n_blocks // 10) == 0:
            log.info("kNN distances: %d/%d rows", stop, n)
    return (out_d if squared else out_d.sqrt_()), out_i


def nearest_distinct(X: np.ndarray | torch.Tensor, centers: np.ndarray | torch.Tensor, *,
                     batch_size: int | None = None,
                     device: torch.device | str | None = None) -> np.ndarray:
    """For each centre in order, the nearest sample not taken by an earlier centre.

    Parameters
    ----------
    X : array or Tensor of shape (n, d)
    centers : array or Tensor of shape (K, d), K <= n
    batch_size : int, optional
        Rows of ``X`` per distance block; default: blocks of about 256 MB.
    device : torch device, optional

    Returns
    -------
    ndarray of shape (K,), int64: distinct rows of ``X`` (first index on ties).

    Time O(n K d); memory O(batch_size * K), plus O(n d) per colliding centre (duplicates).
    """
    X = as_device_tensor(X, device)
    C = as_device_tensor(centers, X.device)
    x_sq = (X * X).sum(dim=1)
    c_sq = (C * C).sum(dim=1)
    best_d = torch.full((C.shape[0],), float("inf"), device=X.device)
    best_i = torch.zeros(C.shape[0], dtype=torch.int64, device=X.device)
    step = _rows_per_block(C.shape[0], batch_size)
    for start in range(0, X.shape[0], step):
        d = _sq_distances(C, c_sq, X[start:start + step], x_sq[start:start + step])
        values, idx = d.min(dim=1)
        better = values < best_d  # strict: an earlier block wins ties (first index)
        best_d = torch.where(better, values, best_d)
        best_i = torch.where(better, idx + start, best_i)

    def sq_distances_of(j: int) -> np.ndarray:
        return _sq_distances(C[j][None, :], c_sq[j:j + 1], X, x_sq)[0].cpu().numpy()

    return take_distinct(best_i.cpu().numpy(), sq_distances_of)


def nearest_distinct_exact(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """:func:`nearest_distinct` in numpy: scikit-learn's distances in X's precision.

    The CPU reference of the K-means selector: the nearest samples come from
    :func:`sklearn.metrics.pairwise_distances_argmin_min`, a colliding centre's distances
    from exact differences.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (K, d), K <= n

    Returns
    -------
    ndarray of shape (K,), int64: distinct rows of ``X``.
    """
    nearest, _ = pairwise_distances_argmin_min(centers, X)

    def sq_distances_of(j: int) -> np.ndarray:
        diff = X - centers[j]
        return np.einsum("ij,ij->i", diff, diff)

    return take_distinct(nearest.astype(np.int64), sq_distances_of)


def take_distinct(nearest: np.ndarray, sq_distances_of: Callable[[int], np.ndarray],
                  ) -> np.ndarray:
    """Make the centres' nearest samples distinct, centre by centre in order.

    Parameters
    ----------
    nearest : ndarray of shape (K,), int
        Each centre's nearest sample.
    sq_distances_of : callable
        ``sq_distances_of(j)``: squared distances (n,) of every sample to centre ``j``,
        asked only for a centre whose nearest sample an earlier centre took.

    Returns
    -------
    ndarray of shape (K,), int64: ``nearest``, where a later centre sharing a nearest sample
    takes its nearest free sample instead (first index on ties).
    """
    nearest = np.asarray(nearest, dtype=np.int64)
    if np.unique(nearest).size == nearest.size:
        return nearest
    # Duplicates in the pool: a loop over the centres, not the samples.
    taken: np.ndarray | None = None
    out = np.empty(len(nearest), dtype=np.int64)
    seen: set[int] = set()
    for j, i in enumerate(nearest.tolist()):
        if i not in seen:
            out[j] = i
        else:
            d = np.array(sq_distances_of(j), copy=True)
            if taken is None:
                taken = np.zeros(d.size, dtype=bool)
            taken[list(seen)] = True
            d[taken] = np.inf
            out[j] = int(np.argmin(d))
        seen.add(int(out[j]))
    return out
