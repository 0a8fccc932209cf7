"""MaxHerding (Bae, Noh, Sutherland, ECCV 2024): greedy generalized coverage with a kernel.

:func:`herding_greedy` is the greedy core, shared with UHerding (:mod:`nfpf.active.uherding`):
exact lazy greedy on a facility-location objective, kernel rows computed in chunks (never an
n x n kernel), on the CPU or a GPU.
"""

from __future__ import annotations

import logging
from numbers import Real
from typing import NamedTuple

import numpy as np
import torch

from nfpf.baselines.neighbors import as_float_array, auto_chunk_size, l2_normalize
from nfpf.core import device as nfpf_device
from nfpf.core.selection import (
    Pool,
    Selector,
    check_choice,
    check_param,
    select_on_subset,
)

__all__ = ["KERNELS", "RELEASED_MAX_CANDIDATES", "TIE_RTOL", "HerdingResult", "MaxHerding",
           "herding_greedy", "released_subset_size"]

log = logging.getLogger(__name__)

#: Kernels of :func:`herding_greedy`: the released default and the top-hat of ProbCover.
KERNELS = ("rbf", "tophat")
#: The released code's cap on the candidate subset (``compute_cand_size``).
RELEASED_MAX_CANDIDATES = 35000
#: Gains within this relative distance of the best are ties (float rounding cannot order
#: them); ties go to the lowest index, the released ``argmax`` rule.
TIE_RTOL = 1e-9
#: Stale candidates re-evaluated together in one kernel block of the lazy greedy.
LAZY_BATCH = 32
#: Bytes of the coverage history (m at every version) that lets a known gain be brought
#: up to date on the columns where m grew since, instead of over all n columns.
HISTORY_BYTES = 512 * 2**20
#: Largest fraction of grown columns for which bringing a gain up to date beats recomputing.
UPDATE_MAX = 0.75


class HerdingResult(NamedTuple):
    """What :func:`herding_greedy` returns.

    Attributes
    ----------
    picks : ndarray of shape (budget,), int64
        Row indices of the picks, in the order they were taken.
    gains : ndarray of shape (budget,), float64
        Each pick's marginal gain ``(1/n) sum_x w(x) max(k(c, x) - m(x), 0)`` when it was
        taken (non-increasing: the objective is submodular).
    evaluations : int
        Kernel rows evaluated to score candidates (``n - |labelled|`` for the first pick,
        then only the candidates the lazy greedy re-evaluated).
    """

    picks: np.ndarray
    gains: np.ndarray
    evaluations: int


def released_subset_size(n_labelled: int, budget: int,
                         max_size: int = RELEASED_MAX_CANDIDATES) -> int:
    """The released code's candidate-subset size (``compute_cand_size``):
    ``max(budget, min(max_size, floor(sqrt(45000^2 + (L + B)^2 / 4) - 1.5 (L + B))))``.

    Its kernel of the labelled set plus the subset then fits a 45,000 x 45,000 budget. For
    L + B up to about 6,700 the subset has 35,000 samples.
    """
    s = int(n_labelled) + int(budget)
    size = int((45000 * 45000 + s * s / 4) ** 0.5 - 1.5 * s)
    return max(min(int(max_size), size), int(budget))


def _check_greedy_input(n: int, budget: int, labelled: np.ndarray, weights: np.ndarray | None,
                        bandwidth: float, kernel: str) -> None:
    check_param("budget", budget, low=0)
    check_param("bandwidth", bandwidth, Real, low=0, closed="neither")
    check_choice("kernel", kernel, KERNELS)
    if labelled.size and (labelled.min() < 0 or labelled.max() >= n
                          or np.unique(labelled).size != labelled.size):
        raise ValueError(f"labelled must hold distinct indices in [0, {n}).")
    if budget > n - labelled.size:
        raise ValueError(f"budget={budget} is more than the {n - labelled.size} samples that "
                         f"are not labelled.")
    if weights is not None and (weights.shape != (n,) or not np.isfinite(weights).all()
                                or (weights < 0).any()):
        raise ValueError(f"weights must be {n} finite numbers >= 0 (one per sample).")


class _Coverage:
    """The coverage ``m(x)`` of every sample, its recent history, and candidates' gains.

    The exponent ``-|a - b|^2 / h^2`` of a block of kernel values is one matrix product of
    ``[a, |a|^2, 1]`` and ``[2b / h^2, -1 / h^2, -|b|^2 / h^2]``, written into one reused
    work buffer (fresh pool-sized buffers would page-fault at every block). ``m`` grows one
    pick at a time (its version); the last ``history`` versions are kept so that a gain
    known at an earlier version is brought up to date on the columns where ``m`` grew since
    (:meth:`gains`), instead of over all n columns.
    """

    def __init__(self, X: torch.Tensor, weights: torch.Tensor, bandwidth: float, kernel: str,
                 chunk: int, budget: int):
        n, inv = X.shape[0], 1.0 / (bandwidth * bandwidth)
        sq = torch.einsum("ij,ij->i", X, X)[:, None]
        ones = torch.ones_like(sq)
        self.left = torch.cat([X, sq, ones], dim=1)
        self.right = torch.cat([X * (2.0 * inv), -inv * ones, -inv * sq], dim=1)
        self.w, self.kernel, self.chunk = weights, kernel, chunk
        self.m = torch.zeros(n, dtype=X.dtype, device=X.device)
        self.version = 0
        self.changed_at = torch.zeros(n, dtype=torch.int64, device=X.device)
        history = int(max(2, min(budget + 1, HISTORY_BYTES // (8 * n))))
        self.snapshots = torch.empty(history, n, dtype=X.dtype, device=X.device)
        self.work = torch.empty(chunk * n, dtype=X.dtype, device=X.device)
        self.evaluations = 0

    def block(self, rows: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """Kernel values (len(rows), len(cols)) in the work buffer (``cols``: sorted column
        indices; None: all), with ``k(x, x) = 1`` exactly."""
        right = self.right if cols is None else self.right[cols]
        out = self.work[:rows.numel() * right.shape[0]].view(rows.numel(), right.shape[0])
        torch.mm(self.left[rows], right.T, out=out).clamp_max_(0.0)  # |a - b|^2 >= 0
        diagonal = torch.arange(rows.numel(), device=out.device)
        if cols is None:
            out[diagonal, rows] = 0.0
        else:
            at = torch.searchsorted(cols, rows).clamp_max_(cols.numel() - 1)
            own = cols[at] == rows
            out[diagonal[own], at[own]] = 0.0
        return out.gt_(-1.0) if self.kernel == "tophat" else out.exp_()

    def cover(self, rows: np.ndarray, new_version: bool = True) -> None:
        """m <- max(m, k(c, .)) for the samples ``rows``; with ``new_version``, record it."""
        idx = torch.from_numpy(rows).to(self.m.device)
        best = self.block(idx).amax(dim=0)
        if new_version:
            self.version += 1
            self.changed_at[best > self.m] = self.version
        torch.maximum(self.m, best, out=self.m)
        self.snapshots[self.version % len(self.snapshots)] = self.m

    def gains(self, idx: np.ndarray) -> np.ndarray:
        """Unnormalised gains ``sum_x w(x) max(k(c, x) - m(x), 0)`` of the candidates ``idx``,
        over all n columns, ``chunk`` rows per block."""
        out = np.empty(idx.size)
        for start in range(0, idx.size, self.chunk):
            part = torch.from_numpy(idx[start:start + self.chunk]).to(self.m.device)
            block = self.block(part).sub_(self.m).clamp_min_(0.0)
            out[start:start + part.numel()] = torch.mv(block, self.w).cpu().numpy()
        self.evaluations += int(idx.size)
        return out

    def changed_since(self) -> np.ndarray:
        """For every version v, how many columns grew after it (``changed_at > v``)."""
        counts = torch.bincount(self.changed_at, minlength=self.version + 1).cpu().numpy()
        return counts[::-1].cumsum()[::-1] - counts

    def update(self, idx: np.ndarray, versions: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Gains of ``idx`` now, from their exact gains ``known`` at ``versions`` (all in
        the history): only the columns where m grew since the oldest of them are computed,
        ``gain = known - sum_x w(x) (clamp(k, m_then, m_now) - m_then)``."""
        cols = torch.nonzero(self.changed_at > int(versions.min())).flatten()
        self.evaluations += int(idx.size)
        if cols.numel() == 0:  # m has not grown since: still exact
            return known.copy()
        slots = torch.from_numpy(versions % len(self.snapshots)).to(self.m.device)
        now, w = self.m[cols], self.w[cols]
        out = np.empty(idx.size)
        rows_per_block = max(1, self.work.numel() // (2 * cols.numel()))
        for start in range(0, idx.size, rows_per_block):
            stop = min(idx.size, start + rows_per_block)
            part = torch.from_numpy(idx[start:stop]).to(self.m.device)
            then = self.snapshots[slots[start:stop, None], cols[None, :]]
            block = self.block(part, cols)
            lost = torch.mv(torch.clamp(block, min=then, max=now).sub_(then), w)
            out[start:stop] = known[start:stop] - lost.cpu().numpy()
        return out


class _LazyGreedy:
    """Stale upper bounds of every candidate's gain, brought up to date only where needed.

    ``ub[c]`` is c's exact gain at version ``exact_at[c]`` of the coverage, an upper bound
    at every later version (a gain never grows as m grows); -inf for non-candidates.
    """

    def __init__(self, coverage: _Coverage, candidate: np.ndarray):
        self.coverage = coverage
        self.ub = np.where(candidate, np.inf, -np.inf)
        self.exact_at = np.full(candidate.size, -1)
        self.index = np.arange(candidate.size)

    def evaluate(self, idx: np.ndarray) -> None:
        """Exact gains of ``idx`` now: brought up to date from their last exact gains where
        those are in the coverage's history and at most ``UPDATE_MAX`` of the columns grew
        since (in groups whose counts of grown columns are within a factor 2), else computed
        over all columns."""
        coverage = self.coverage
        versions = self.exact_at[idx]
        recent = (versions >= 0) & (coverage.version - versions < len(coverage.snapshots))
        grown = np.zeros(idx.size, dtype=np.int64)
        if recent.any():
            grown[recent] = coverage.changed_since()[versions[recent]]
            recent &= grown <= UPDATE_MAX * coverage.m.numel()
        groups = np.floor(np.log2(grown + 1.0)).astype(np.int64)
        for group in np.unique(groups[recent]):
            part = recent & (groups == group)
            self.ub[idx[part]] = coverage.update(idx[part], versions[part], self.ub[idx[part]])
        if not recent.all():
            self.ub[idx[~recent]] = coverage.gains(idx[~recent])
        self.exact_at[idx] = coverage.version

    def pick(self) -> int:
        """The greedy pick: lowest index among gains within ``TIE_RTOL`` of the best.

        A stale candidate can change the pick only if its bound reaches the best exact gain
        minus the tolerance and it has a lower index than the pick or a bound above the best
        gain (one at or below it and of higher index changes neither the best gain nor the
        pick); the margin 2 x tolerance absorbs rounding of the bounds.
        """
        while True:
            fresh = self.exact_at == self.coverage.version
            if fresh.any():
                fresh_idx = np.flatnonzero(fresh)
                values = self.ub[fresh_idx]
                best = float(values.max())
                tol = TIE_RTOL * best
                pick = int(fresh_idx[np.argmax(values >= best - tol)])
                need = ~fresh & (self.ub >= best - 2 * tol) & (
                    (self.index < pick) | (self.ub > best))
            else:
                need = ~fresh & (self.ub > -np.inf)
            idx = np.flatnonzero(need)
            if idx.size == 0:
                return pick
            if idx.size > LAZY_BATCH:  # the highest bounds first
                idx = np.sort(idx[np.argpartition(-self.ub[idx], LAZY_BATCH - 1)[:LAZY_BATCH]])
            self.evaluate(idx)

    def remove(self, pick: int) -> None:
        self.ub[pick] = -np.inf


def herding_greedy(
    features: np.ndarray | torch.Tensor,
    budget: int,
    *,
    labelled: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    bandwidth: float = 1.0,
    kernel: str = "rbf",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    lazy: bool = True,
) -> HerdingResult:
    """Greedy maximisation of the (weighted) generalized coverage
    ``C(S) = (1/n) sum_x w(x) max_{s in L u S} k(x, s)``.

    Each step takes the candidate c (not labelled, not picked) of largest gain
    ``(1/n) sum_x w(x) max(k(c, x) - m(x), 0)``, where ``m(x) = max_{s in L u S} k(x, s)``
    (0 when L u S is empty), then sets ``m <- max(m, k(c, .))``. Gains within a relative
    ``TIE_RTOL`` of the best are ties and go to the lowest index (the released ``argmax``).
    ``C`` is a facility-location function, monotone submodular for weights >= 0, so a gain
    never grows: the lazy greedy keeps each candidate's last exact gain as an upper bound,
    re-evaluates only candidates whose bound could still win (up to 32 at once), and brings
    a recent gain up to date on the columns where m grew since; it takes the plain greedy's
    picks.

    Parameters
    ----------
    features : ndarray or Tensor of shape (n, d)
        The rows as given (MaxHerding passes L2-normalised ones).
    budget : int
        Number of picks, at most ``n - len(labelled)``.
    labelled : ndarray of int, optional
        Samples already covering: m starts at their maximum kernel value; never picked.
    weights : ndarray of shape (n,), optional
        Per-sample weights ``w(x) >= 0`` (UHerding's uncertainty); ``None``: all 1.
    bandwidth : float
        The kernel's ``h > 0``.
    kernel : {"rbf", "tophat"}
        ``exp(-|x - y|^2 / h^2)`` (released default) or ``1[|x - y| < h]``, with which the
        greedy is ProbCover's.
    chunk_size : int, optional
        Rows per kernel block when candidates are scored against all n samples (default:
        blocks of about 128 MB).
    device : torch.device or str, optional
        Where the kernel blocks are computed (default: the CPU); float64 everywhere.
    lazy : bool
        ``False``: the plain greedy, every candidate scored over all n samples at every step
        (the reference of the tests).

    Returns
    -------
    HerdingResult
        ``picks`` (budget,), ``gains`` (budget,) and the number of candidate evaluations.

    Time: the first pick scores all n candidates, O(n^2 d); later picks re-score the few
    candidates near the top, mostly over the columns where the coverage grew (plain greedy:
    O(B n^2 d)). Memory O(n d + chunk_size n).
    """
    X = torch.as_tensor(features).to(device=device or "cpu", dtype=torch.float64)
    n = X.shape[0]
    labelled = np.empty(0, np.int64) if labelled is None else \
        np.asarray(labelled, dtype=np.int64).reshape(-1)
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    _check_greedy_input(n, budget, labelled, weights, bandwidth, kernel)
    w = torch.ones(n, dtype=torch.float64) if weights is None else torch.from_numpy(weights)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n, 8)
    coverage = _Coverage(X, w.to(X.device), float(bandwidth), kernel, chunk, budget)
    for start in range(0, labelled.size, chunk):
        coverage.cover(labelled[start:start + chunk], new_version=False)
    candidate = np.ones(n, dtype=bool)
    candidate[labelled] = False
    greedy = _LazyGreedy(coverage, candidate)
    picks = np.empty(budget, dtype=np.int64)
    picked_gains = np.empty(budget)
    for t in range(budget):
        if t == 0 or not lazy:
            greedy.evaluate(np.flatnonzero(candidate) if lazy else _reset(greedy, candidate))
        pick = greedy.pick()
        picks[t], picked_gains[t] = pick, greedy.ub[pick] / n
        coverage.cover(np.array([pick]))
        candidate[pick] = False
        greedy.remove(pick)
    return HerdingResult(picks, picked_gains, coverage.evaluations)


def _reset(greedy: _LazyGreedy, candidate: np.ndarray) -> np.ndarray:
    """Forget every known gain (the plain greedy scores everything afresh); the candidates."""
    greedy.exact_at[:] = -1
    return np.flatnonzero(candidate)


class MaxHerding(Selector):
    """Pick the samples that most increase the generalized coverage of the pool.

    Features are L2-normalised (``normalize``) and the kernel is
    ``k(x, y) = exp(-|x - y|^2 / h^2)`` with ``h = bandwidth`` (1.0 in the released scripts).
    The picks maximise ``C(S) = (1/n) sum_x max_{s in S} k(x, s)`` greedily
    (:func:`herding_greedy`, exact lazy greedy; ties: the lowest index, as the released
    ``argmax``). With ``kernel="tophat"`` (``1[|x - y| < h]``) it is ProbCover's greedy with
    δ = h.

    Parameters
    ----------
    bandwidth : float
        The kernel width ``h > 0`` (released: 1.0).
    kernel : {"rbf", "tophat"}
        Released default ``rbf``.
    normalize : bool
        L2-normalise the features first (released code). An all-zero row stays at the
        origin (:func:`nfpf.baselines.neighbors.l2_normalize`).
    max_candidates : int, "released" or None
        ``None`` (default): the whole pool, exact. An int: a seeded random subset of
        ``max(max_candidates, B)`` samples, on which both the picks and the objective are
        computed. ``"released"``: the released code's subset size,
        :func:`released_subset_size` (35,000 while B <= 6,700; it exists to bound its
        n x n kernel on a GPU).
    chunk_size : int, optional
        Rows per kernel block (default: about 128 MB); bounds the memory, not the picks.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the kernel blocks are computed (float64 on either).

    Attributes
    ----------
    info_ : dict
        ``bandwidth``, ``kernel``, ``candidate_subset`` (its size or None), ``evaluations``
        (kernel rows scored), ``gains`` (each pick's marginal gain, in pick order) and, on a
        GPU, ``device``.

    Time O(n^2 d) for the first pick plus O(n d) per re-evaluated candidate; memory
    O(n d + chunk_size n).
    """

    def __init__(self, bandwidth: float = 1.0, kernel: str = "rbf", normalize: bool = True,
                 max_candidates: int | str | None = None, chunk_size: int | None = None,
                 device: str = "auto"):
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.normalize = normalize
        self.max_candidates = max_candidates
        self.chunk_size = chunk_size
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        check_param("bandwidth", self.bandwidth, Real, low=0, closed="neither")
        check_choice("kernel", self.kernel, KERNELS)
        check_choice("normalize", self.normalize, (True, False))
        check_param("max_candidates", self.max_candidates, low=1, also=(None, "released"),
                    hint=" (None: the whole pool; 'released': the released subset size)")
        check_param("chunk_size", self.chunk_size, low=1, also=(None,),
                    hint=" (None: blocks of about 128 MB)")
        nfpf_device.check_device(self.device)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        cap = (released_subset_size(0, budget) if self.max_candidates == "released"
               else self.max_candidates)
        with nfpf_device.gpu_memory_guard("maxherding", "selector.chunk_size"):
            picks, size = select_on_subset(
                pool, budget, seed, cap, "maxherding",
                lambda sub, b, s: self._herd(sub.features, b, gpu))
        self.info_["candidate_subset"] = size
        if gpu is not None:
            self.info_["device"] = str(gpu)
        return picks

    def _herd(self, features: np.ndarray, budget: int, gpu: torch.device | None) -> np.ndarray:
        X = as_float_array(features)
        if self.normalize:
            X = l2_normalize(X)
        result = herding_greedy(X, budget, bandwidth=float(self.bandwidth), kernel=self.kernel,
                                chunk_size=self.chunk_size, device=gpu)
        self.info_.update(bandwidth=float(self.bandwidth), kernel=self.kernel,
                          evaluations=result.evaluations,
                          gains=[float(g) for g in result.gains])
        log.info("maxherding: %d picks, %d kernel rows evaluated (n = %d)", budget,
                 result.evaluations, len(X))
        return result.picks
