"""ProbCover (Yehuda, Dekel, Hacohen, Weinshall, NeurIPS 2022): greedy max coverage of δ-balls."""

from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_memory

from nfpf.baselines.neighbors import as_float_array, auto_chunk_size, l2_normalize
from nfpf.core import kernels
from nfpf.core.memo import Memo
from nfpf.core.selection import Pool, SubsetSelector, check_choice, check_param

__all__ = ["ProbCover", "delta_ball_graph", "greedy_max_coverage", "purity_delta"]

log = logging.getLogger(__name__)


class ProbCover(SubsetSelector):
    """Greedy maximum coverage of the δ-ball graph of L2-normalised features.

    The graph has an edge i -> j when ``||x_i - x_j|| < δ`` (every node covers itself). It is
    built row block by row block and stored as a sparse CSR matrix, so memory is O(edges),
    never O(n^2). Each step takes the node whose ball holds the most still-uncovered nodes
    (ties: the lowest index, as the released code's ``argmax``) and marks its ball covered;
    the uncovered counts are updated incrementally from the newly covered nodes' balls (the
    graph is symmetric), so the whole greedy costs O(edges + n B).

    δ is either given or chosen by the purity rule: with K-means (K = ``pool.n_classes``)
    pseudo-labels, a ball is pure when every sample in it has its centre's label, and δ is
    the largest value for which at least a fraction α of the balls are pure. Purity only
    changes at the distances ``r_i`` from each sample to its nearest sample of another
    cluster (ball i is pure iff ``r_i >= δ``), so the search runs over exactly that grid,
    derived from the data: δ* = the ``floor((1 - α) n)``-th smallest ``r_i``. It is computed
    exactly, in the same chunked pass that builds the graph (a seeded row sample first bounds
    δ* from above; a second pass runs only if that bound was too low).

    Once every node is covered, no pick gains coverage and the released code's ``argmax``
    would return node 0 again; here the remaining picks are drawn uniformly at random (seeded)
    from the unselected samples, and ``info_["full_coverage_at"]`` says after how many picks
    that happened.

    Parameters
    ----------
    delta : float, optional
        Ball radius in the L2-normalised space (0 < δ). ``None``: purity rule.
    alpha : float
        Purity level of the rule, 0 < α <= 1 (paper: 0.95).
    normalize : bool
        L2-normalise the features first (paper: yes).
    max_candidates : int or None, default=None
        Bounded mode: largest pool used whole; above it a seeded random candidate subset of
        ``max(max_candidates, budget)`` samples (see below). None: never subsample.
    chunk_size : int, optional
        Rows per distance block (default: blocks of about 128 MB).
    purity_sample : int
        Rows sampled to bound δ* before the full pass (only changes the speed, not δ*).
    n_init : int or "auto"
        Restarts of the purity rule's K-means.
    memory : str, joblib.Memory or None, default=None
        Where to cache δ and the ball graph, which do not depend on the budget: a sweep
        over budgets with the same pool, seed and parameters builds them once
        (:class:`nfpf.core.memo.Memo`; ``nfpf-run`` passes its cache). The picks are identical
        with or without it; ``info_["memory_hits"]`` says what was reused.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the chunked distance passes (and the purity rule's K-means) run: ``"cpu"``
        (the reference), a GPU, or ``"auto"`` (the GPU when one is visible). The passes do
        the same float32 arithmetic on either, so with ``delta`` given the picks are the
        same; the purity rule's K-means on the GPU is :func:`nfpf.core.kernels.kmeans`
        (``n_init="auto"``: one restart), scikit-learn's clustering up to float32 rounding,
        so δ and the picks too, up to that rounding. GPU memory O(chunk_size * n).

    Time O(n^2 d) for the graph (one chunked pass, two when δ* is under-estimated) plus
    O(n K d iterations) for K-means and O(edges + n B) for the greedy. Memory
    O(n d + edges + chunk_size * n).

    Bounded mode (``max_candidates``): on pools larger than ``max_candidates`` the whole
    method runs on a seeded random subset of m = max(max_candidates, B) samples (graph,
    δ and picks from the subset only): time O(m^2 d), memory O(m d + edges(m) + chunk * m).
    Changes the result when it bites (``info_["candidate_subset"]``); identical otherwise.
    """

    def __init__(
        self,
        delta: float | None = None,
        alpha: float = 0.95,
        normalize: bool = True,
        chunk_size: int | None = None,
        purity_sample: int = 2000,
        n_init: int | str = "auto",
        max_candidates: int | None = None,
        memory: Any = None,
        device: str = "auto",
    ):
        self.delta = delta
        self.alpha = alpha
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.purity_sample = purity_sample
        self.n_init = n_init
        self.max_candidates = max_candidates
        self.memory = memory
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        super().check_params()
        check_param("delta", self.delta, Real, low=0, closed="neither", also=(None,),
                    hint=" (a radius: distances of L2-normalised features lie in [0, 2]; "
                         "None: the purity rule)")
        check_param("alpha", self.alpha, Real, low=0, high=1, closed="right")
        check_choice("normalize", self.normalize, (True, False))
        check_param("chunk_size", self.chunk_size, low=1, also=(None,))
        check_param("purity_sample", self.purity_sample, low=1)
        check_param("n_init", self.n_init, low=1, also=("auto",))
        check_memory(self.memory)  # a directory, a joblib.Memory or None

    def _select_all(self, pool: Pool, budget: int, seed: int,
                    gpu: torch.device | None = None) -> np.ndarray:
        device = None if gpu is None else str(gpu)
        X = as_float_array(pool.features)
        if self.normalize:
            X = l2_normalize(X)
        rng = np.random.default_rng(seed)
        memo = Memo(self.memory)
        graph, info = self._ball_graph(X, pool.n_classes, seed, rng, memo, device)
        info["memory_hits"] = list(memo.hits)
        n_edges = int(graph.nnz)
        info.update(n_edges=n_edges, mean_ball_size=n_edges / pool.n)
        log.info("probcover: delta=%.4g (%s), %d edges (%.1f per sample)", info["delta"],
                 info["delta_source"], n_edges, n_edges / pool.n)
        selected, coverage = greedy_max_coverage(graph, budget, rng, with_coverage=True)
        full = np.flatnonzero(coverage >= pool.n)
        info.update(coverage=float(coverage[-1]) / pool.n,
                    full_coverage_at=int(full[0]) + 1 if full.size and full[0] + 1 < budget
                    else None)
        if info["full_coverage_at"] is not None:
            log.info("probcover: every sample covered after %d picks; the remaining %d are "
                     "drawn at random", info["full_coverage_at"],
                     budget - info["full_coverage_at"])
        self.info_ = info
        return selected

    def _ball_graph(self, X: np.ndarray, n_classes: int | None, seed: int,
                    rng: np.random.Generator, memo: Memo, device: str | None,
                    ) -> tuple[sp.csr_matrix, dict]:
        """The δ-ball graph (δ given or by the purity rule) and what ``info_`` says of it;
        after the purity rule ``rng`` goes on from the rule's draws."""
        if self.delta is not None:
            if self.normalize and self.delta > 2.0:
                raise ValueError(
                    f"delta={self.delta} exceeds 2, the largest distance between L2-normalised "
                    f"features: every ball would hold the whole pool. Choose 0 < delta <= 2."
                )
            graph = memo.call("graph", delta_ball_graph, X,
                              params=dict(delta=self.delta, chunk_size=self.chunk_size,
                                          device=device))
            return graph, {"alpha": self.alpha, "delta": self.delta, "delta_source": "given"}
        delta, graph, extra, rng_state = memo.call(
            "purity_graph", _purity_graph, X,
            params=dict(n_classes=n_classes, seed=seed, n_init=self.n_init, alpha=self.alpha,
                        chunk_size=self.chunk_size, purity_sample=self.purity_sample,
                        device=device))
        rng.bit_generator.state = rng_state  # the greedy goes on from the same draws
        return graph, {"alpha": self.alpha, "delta": delta, "delta_source": "purity", **extra}


def _purity_graph(X: np.ndarray, n_classes: int | None, seed: int, n_init, alpha: float,
                  chunk_size: int | None, purity_sample: int, device: str | None = None,
                  ) -> tuple[float, sp.csr_matrix, dict, dict]:
    """The purity rule's δ* and ball graph, and the state of the run's generator (seeded
    with ``seed``) after them, from which the greedy goes on."""
    rng = np.random.default_rng(seed)
    labels = _purity_labels(X, n_classes, seed, n_init, device)
    delta, graph, extra = _purity_delta_and_graph(X, labels, alpha, rng, chunk_size,
                                                  purity_sample, device)
    return delta, graph, extra, rng.bit_generator.state


def _purity_labels(X: np.ndarray, n_classes: int | None, seed: int, n_init,
                   device: str | None = None) -> np.ndarray:
    if n_classes is None:
        raise ValueError(
            "ProbCover's purity rule needs the number of classes (K-means with K = "
            "n_classes), but none was given. Give it, e.g. nfpf.select(X, budget, "
            "method='probcover', n_classes=10) (Pool(..., n_classes=10) for a Pool; "
            "n_classes=10 on nfpf-select), or fix the ball radius instead: delta=0.5."
        )
    n_classes = int(n_classes)
    if n_classes < 2:
        raise ValueError(
            f"ProbCover's purity rule cannot be met with n_classes={n_classes}: with a single "
            f"cluster every ball is pure, so no largest δ exists. Pass delta=<radius>."
        )
    if n_classes > len(X):
        raise ValueError(
            f"ProbCover's purity rule needs K-means with K = n_classes = {n_classes} clusters, "
            f"more than the {len(X)} samples of the pool. Pass delta=<radius> or use a larger "
            f"pool."
        )
    labels = kernels.kmeans_labels(X, n_classes, seed, n_init=n_init, device=device)
    if np.unique(labels).size < 2:
        raise ValueError(
            "ProbCover's purity rule cannot be met: K-means put every sample in one cluster "
            "(the features are constant?), so no largest δ exists. Pass delta=<radius>."
        )
    return labels.astype(np.int64)


def _scan(
    X: np.ndarray,
    *,
    threshold: float | None = None,
    bounds: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    chunk_size: int | None = None,
    keep_similarity: bool = False,
    device: str | None = None,
    on_device: torch.Tensor | None = None,
) -> dict:
    """One chunked pass over the similarities ``S = X[rows] @ X.T`` of unit-norm features.

    With ``threshold`` (only for ``rows=None``): the edges ``S > threshold`` plus every
    self-loop, as CSR pieces in the order of ``X``. With ``bounds``: the rows of ``X`` are
    sorted by cluster, cluster c occupying rows ``bounds[c]:bounds[c + 1]``, and each row's
    largest similarity to a sample of another cluster is returned. ``rows`` must be sorted.
    Works on "similarities" ``s(a, b) = a.b - h_a - h_b`` with ``h = (|x|^2 - 1) / 2``, so
    that ``||a - b||^2 = 2 - 2 s(a, b)`` for any rows; for unit-norm rows ``h`` is 0 (and
    skipped) and ``s`` is the cosine. With ``device`` (a torch device) the pass runs there
    (:func:`_scan_torch`) and returns the same; ``on_device`` is ``X`` already copied there
    (``torch.from_numpy(X).to(device)``), so that several passes over one pool copy it once.
    """
    n = X.shape[0]
    row_ids = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if threshold is not None and rows is not None:
        raise ValueError("edges are only built over all rows")
    if device is not None:
        return _scan_torch(X, row_ids, threshold=threshold, bounds=bounds,
                           all_rows=rows is None, chunk_size=chunk_size,
                           keep_similarity=keep_similarity, device=torch.device(device),
                           on_device=on_device)
    Xt = torch.from_numpy(X)
    h = (np.einsum("ij,ij->i", X, X) - 1.0) / 2.0
    h = h.astype(X.dtype) if np.abs(h).max() > 1e-6 else None
    chunk = chunk_size or auto_chunk_size(n, X.itemsize)
    chunk = min(chunk, max(1, row_ids.size))
    buffer = torch.empty((chunk, n), dtype=Xt.dtype)
    if threshold is not None:
        # The comparison mask, flat and padded to whole 8-byte words so that it can be
        # scanned a word at a time (edges are rare).
        flat = np.zeros(-(-chunk * n // 8) * 8, dtype=bool)
    best = np.empty(row_ids.size, dtype=X.dtype) if bounds is not None else None
    row_label = (np.searchsorted(bounds, row_ids, side="right") - 1) if bounds is not None \
        else None
    counts, cols, sims = [], [], []
    n_blocks = -(-row_ids.size // chunk)
    for b, start in enumerate(range(0, row_ids.size, chunk)):
        ids = row_ids[start:start + chunk]
        m = ids.size
        block_t = buffer[:m]
        rows_x = Xt[start:start + m] if rows is None else Xt[torch.from_numpy(ids)]
        torch.mm(rows_x, Xt.T, out=block_t)
        block = block_t.numpy()
        if h is not None:
            block -= h[None, :]
            block -= h[ids, None]
        if threshold is not None:
            r, c, similarity = _block_edges(block, start, threshold, flat, keep_similarity)
            if keep_similarity:
                sims.append(similarity)
            counts.append(np.bincount(r, minlength=m))
            cols.append(c.astype(np.int32))
        if bounds is not None:
            best[start:start + m] = _best_other_cluster(block, row_label[start:start + m],
                                                        bounds)
        if n_blocks >= 20 and (b + 1) % max(1, n_blocks // 10) == 0:
            log.info("probcover: distance pass %d/%d rows", start + m, row_ids.size)
    return _scan_output(threshold, counts, cols, sims if keep_similarity else None, best)


def _block_edges(block: np.ndarray, start: int, threshold: float, flat: np.ndarray,
                 keep_similarity: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows and columns of the entries of ``block`` (rows ``start:start + m`` of the pool,
    all columns) above ``threshold``, plus every self-pair, in row-major order, and with
    ``keep_similarity`` their similarities (a self-pair's is ``inf``).

    ``flat`` is a boolean work buffer of at least m * n entries, padded to whole 8-byte
    words, so that the comparison mask is scanned a word at a time (edges are rare).
    """
    m, n = block.shape
    diagonal = np.arange(m), np.arange(start, start + m)  # the self-pairs
    saved = block[diagonal]
    block[diagonal] = np.inf  # every node covers itself
    if m * n < flat.size:
        flat[m * n:] = False
    np.greater(block, threshold, out=flat[:m * n].reshape(m, n))
    words = torch.nonzero(torch.from_numpy(flat.view(np.int64))).numpy()[:, 0]
    positions = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    positions = positions[flat[positions]]
    r, c = np.divmod(positions, n)
    similarity = block[r, c] if keep_similarity else None
    block[diagonal] = saved
    return r, c, similarity


def _best_other_cluster(block: np.ndarray, labels_here: np.ndarray, bounds: np.ndarray,
                        ) -> np.ndarray:
    """Each row's largest similarity to a sample of another cluster (``block`` is masked
    in place). Rows and columns are sorted by cluster: cluster c's columns are
    ``bounds[c]:bounds[c + 1]`` and each cluster's rows are contiguous."""
    m = block.shape[0]
    cuts = np.flatnonzero(np.diff(labels_here)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, m], strict=True):  # a loop over clusters
        c_id = labels_here[lo]
        block[lo:hi, int(bounds[c_id]):int(bounds[c_id + 1])] = -np.inf
    return block.max(axis=1)


def _scan_output(threshold: float | None, counts: list, cols: list, sims: list | None,
                 best: np.ndarray | None) -> dict:
    """What a scan returns: the graph's CSR arrays (with the similarities when kept) when a
    threshold was given, and each row's best similarity to another cluster when asked."""
    out: dict = {}
    if threshold is not None:
        out["indptr"] = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        out["indices"] = np.concatenate(cols)
        if sims is not None:
            out["similarity"] = np.concatenate(sims)
    if best is not None:
        out["best_other"] = best
    return out


def _scan_torch(X: np.ndarray, row_ids: np.ndarray, *, threshold: float | None,
                bounds: np.ndarray | None, all_rows: bool, chunk_size: int | None,
                keep_similarity: bool, device: torch.device,
                on_device: torch.Tensor | None = None) -> dict:
    """:func:`_scan` on a torch device: the same float32 arithmetic and comparisons, with
    only the edges (and each row's best similarity) copied back. ``on_device``: ``X`` already
    on ``device`` (else it is copied here)."""
    n = X.shape[0]
    Xt = torch.from_numpy(X).to(device) if on_device is None else on_device
    h = (np.einsum("ij,ij->i", X, X) - 1.0) / 2.0
    h = torch.from_numpy(h.astype(X.dtype)).to(device) if np.abs(h).max() > 1e-6 else None
    chunk = min(chunk_size or auto_chunk_size(n, X.itemsize), max(1, row_ids.size))
    ids_all = torch.from_numpy(row_ids).to(device)
    if bounds is not None:
        sizes = torch.from_numpy(np.diff(bounds)).to(device)
        col_label = torch.repeat_interleave(torch.arange(sizes.numel(), device=device), sizes)
        best = torch.empty(row_ids.size, dtype=Xt.dtype, device=device)
    counts, cols, sims = [], [], []
    for start in range(0, row_ids.size, chunk):
        ids = ids_all[start:start + chunk]
        m = ids.numel()
        block = Xt[start:start + m] @ Xt.T if all_rows else Xt[ids] @ Xt.T
        if h is not None:
            block -= h[None, :]
            block -= h[ids, None]
        if threshold is not None:
            diagonal = block.diagonal(offset=start)  # the self-pairs (all rows)
            saved = diagonal.clone()
            diagonal.fill_(float("inf"))  # every node covers itself
            r, c = torch.nonzero(block > threshold, as_tuple=True)  # row-major, like _scan
            if keep_similarity:
                sims.append(block[r, c].cpu().numpy())
            diagonal.copy_(saved)
            counts.append(torch.bincount(r, minlength=m).cpu().numpy())
            cols.append(c.to(torch.int32).cpu().numpy())
        if bounds is not None:
            block.masked_fill_(col_label[ids][:, None] == col_label[None, :], float("-inf"))
            best[start:start + m] = block.max(dim=1).values
    return _scan_output(threshold, counts, cols, sims if keep_similarity else None,
                        best.cpu().numpy() if bounds is not None else None)


def _csr(indptr: np.ndarray, indices: np.ndarray, n: int) -> sp.csr_matrix:
    data = np.ones(indices.size, dtype=np.int8)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def delta_ball_graph(
    features: np.ndarray, delta: float, *, chunk_size: int | None = None,
    device: str | None = None,
) -> sp.csr_matrix:
    """The δ-ball graph: edge i -> j iff ``||x_i - x_j|| < delta``.

    Parameters
    ----------
    features : ndarray of shape (n, d)
        Any rows (ProbCover passes L2-normalised ones).
    delta : float
        Radius, > 0.
    chunk_size : int, optional
        Rows per distance block.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n, n), int8 ones (symmetric; diagonal set).

    Time O(n^2 d); memory O(edges + chunk_size * n). Every row is processed, including the
    last partial block.
    """
    if not float(delta) > 0:
        raise ValueError(f"delta must be > 0; got {delta!r}.")
    X = as_float_array(features)
    threshold = 1.0 - float(delta) ** 2 / 2.0
    out = _scan(X, threshold=threshold, chunk_size=chunk_size, device=device)
    return _csr(out["indptr"], out["indices"], X.shape[0])


def _purity_threshold(best_other: np.ndarray, alpha: float) -> float:
    """Smallest similarity threshold t with #{i: best_other_i > t} <= floor((1 - α) n)."""
    n = best_other.size
    allowed = math.floor((1.0 - alpha) * n + 1e-9)
    if allowed >= n:
        return -1.0
    return float(np.partition(-best_other, allowed)[allowed] * -1.0)


def _delta_from_threshold(threshold: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * threshold))


def purity_delta(
    features: np.ndarray, labels: np.ndarray, alpha: float = 0.95, *,
    chunk_size: int | None = None,
) -> float:
    """The largest δ for which at least a fraction ``alpha`` of the δ-balls are pure.

    A ball around x_i (``||x_j - x_i|| < δ``) is pure when all its samples have label
    ``labels[i]``, i.e. when δ <= r_i, the distance from x_i to its nearest sample with
    another label. The answer is therefore the ``floor((1 - α) n)``-th smallest r_i
    (0-based), computed exactly in one chunked pass.

    Parameters
    ----------
    features : ndarray of shape (n, d)
        Any rows (ProbCover passes L2-normalised ones).
    labels : ndarray of shape (n,)
        Cluster labels (at least two distinct values).
    alpha : float
        Required fraction of pure balls, in (0, 1].

    Returns
    -------
    delta : float

    Raises
    ------
    ValueError
        When fewer than two labels are present (every ball is pure: no largest δ) or when no
        δ > 0 reaches the purity (too many samples coincide with a sample of another label).

    Time O(n^2 d); memory O(n + chunk_size * n).
    """
    X = as_float_array(features)
    order, bounds = _sort_by_label(labels, X.shape[0])
    best = _scan(np.ascontiguousarray(X[order]), bounds=bounds, chunk_size=chunk_size)
    return _checked_delta(_purity_threshold(best["best_other"], alpha), alpha, X.dtype)


def _sort_by_label(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order grouping equal labels, and each group's [start, stop) bounds."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},); got {labels.shape}.")
    _, dense = np.unique(labels, return_inverse=True)
    dense = dense.reshape(-1)
    if dense.max(initial=0) < 1:
        raise ValueError(
            "The purity rule cannot be met with a single label: every ball is pure, so no "
            "largest δ exists. Pass delta explicitly."
        )
    order = np.argsort(dense, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(dense))]).astype(np.int64)
    return order, bounds


def _checked_delta(threshold: float, alpha: float, dtype=np.float64) -> float:
    delta = _delta_from_threshold(threshold)
    # Below ~sqrt(machine epsilon) a distance of unit vectors is rounding noise, i.e. 0.
    if not delta > 4.0 * math.sqrt(np.finfo(dtype).eps):
        raise ValueError(
            f"The purity rule cannot be met: no δ > 0 keeps a fraction alpha={alpha} of the "
            f"balls pure (too many samples coincide with a sample of another cluster). Lower "
            f"alpha or pass delta explicitly."
        )
    return delta


def _purity_delta_and_graph(
    X: np.ndarray,
    labels: np.ndarray,
    alpha: float,
    rng: np.random.Generator,
    chunk_size: int | None,
    n_sample: int,
    device: str | None = None,
) -> tuple[float, sp.csr_matrix, dict]:
    """δ* by the purity rule and its graph, usually in a single chunked pass.

    Works on the rows sorted by cluster (so masking a cluster is a contiguous slice) and
    maps the graph back to the pool's order at the end.
    """
    n = X.shape[0]
    order, bounds = _sort_by_label(labels, n)
    Xs = np.ascontiguousarray(X[order])
    # One copy of the pool on the device, shared by the two or three passes below.
    on_device = None if device is None else torch.from_numpy(Xs).to(device)
    # 1. Bound δ* from above on a row sample (exact r_i of those rows against all n).
    m = min(n, n_sample)
    p = 1.0 - alpha
    p_hi = min(1.0, p + 4.0 * math.sqrt(max(p * (1 - p), 1.0 / m) / m) + 1.0 / m)
    if m == n or p_hi > 0.5:  # no sample, or one too small for a useful bound: exact r_i first
        best = _scan(Xs, bounds=bounds, chunk_size=chunk_size, device=device,
                     on_device=on_device)["best_other"]
        lower = _purity_threshold(best, alpha)
    else:
        rows = np.sort(rng.choice(n, size=m, replace=False))
        sample_best = _scan(Xs, bounds=bounds, rows=rows, chunk_size=chunk_size,
                            device=device, on_device=on_device)["best_other"]
        lower = _purity_threshold(sample_best, 1.0 - p_hi)
    # 2. Full pass: every row's r_i, plus the edges at the bound (a superset of the final ones).
    out = _scan(Xs, threshold=lower, bounds=bounds, chunk_size=chunk_size,
                keep_similarity=True, device=device, on_device=on_device)
    threshold = _purity_threshold(out["best_other"], alpha)
    delta = _checked_delta(threshold, alpha, X.dtype)
    extra = {"purity": 1.0 - int((out["best_other"] > threshold).sum()) / n,
             "purity_passes": 1 if m < n and p_hi <= 0.5 else 2}
    if threshold >= lower:
        keep = out["similarity"] > threshold
        rows_s = np.repeat(np.arange(n), np.diff(out["indptr"]))[keep]
        cols_s = out["indices"][keep]
    else:  # the sample under-estimated δ*: build the graph again at the exact threshold
        log.info("probcover: purity bound too tight, second pass at delta=%.4g", delta)
        again = _scan(Xs, threshold=threshold, chunk_size=chunk_size, device=device,
                      on_device=on_device)
        rows_s = np.repeat(np.arange(n), np.diff(again["indptr"]))
        cols_s = again["indices"]
        extra["purity_passes"] += 1
    # Back to the pool's order: sorted position p is sample order[p].
    graph = sp.csr_matrix(
        (np.ones(rows_s.size, dtype=np.int8), (order[rows_s], order[cols_s].astype(np.int32))),
        shape=(n, n))
    return delta, graph, extra


def greedy_max_coverage(
    graph: sp.csr_matrix,
    budget: int,
    rng: np.random.Generator,
    *,
    with_coverage: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Greedy maximum coverage on a symmetric ball graph, with incremental counts.

    Each step picks the node whose ball holds the most uncovered nodes (ties: lowest index)
    and covers its ball. When nothing is left to cover, the remaining picks are uniform
    random draws (from ``rng``) among the unselected nodes.

    Parameters
    ----------
    graph : scipy.sparse.csr_matrix of shape (n, n)
        Symmetric; row i lists the nodes in i's ball (including i).
    budget : int
        Number of picks, <= n.
    rng : numpy.random.Generator
    with_coverage : bool
        Also return the number of covered nodes after each pick.

    Returns
    -------
    selected : ndarray of shape (budget,), int64
    coverage : ndarray of shape (budget,), int64 (only with ``with_coverage``)

    Time O(edges + n * budget); memory O(n + edges).
    """
    graph = graph.tocsr()
    n = graph.shape[0]
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices
    uncovered_in_ball = np.diff(indptr)
    covered = np.zeros(n, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    selected = np.empty(budget, dtype=np.int64)
    coverage = np.zeros(budget, dtype=np.int64)
    n_covered = 0
    t = 0
    while t < budget:
        node = int(np.argmax(uncovered_in_ball))
        if uncovered_in_ball[node] <= 0:
            break
        ball = indices[indptr[node]:indptr[node + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        n_covered += new.size
        # Each newly covered node j leaves every ball that contains it: the balls of j's
        # neighbours (the graph is symmetric). Gather all their rows at once.
        starts, lengths = indptr[new], indptr[new + 1] - indptr[new]
        total = int(lengths.sum())
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        uncovered_in_ball -= np.bincount(indices[offsets], minlength=n)
        selected[t] = node
        chosen[node] = True
        coverage[t] = n_covered
        t += 1
    if t < budget:
        rest = np.flatnonzero(~chosen)
        selected[t:] = rng.choice(rest, size=budget - t, replace=False)
        coverage[t:] = n_covered
    if with_coverage:
        return selected, coverage
    return selected
