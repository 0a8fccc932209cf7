"""MaxHerding (Bae, Noh, Sutherland, ECCV 2024): greedy generalized coverage with a kernel.

:func:`herding_greedy` is the greedy core, shared with UHerding (:mod:`nfpf.active.uherding`):
exact greedy on a facility-location objective with every gain kept up to date through the
columns a pick changes, kernel blocks computed in chunks (never an n x n kernel), on the CPU or
a GPU.
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
UPDATES = ("lazy", "incremental", "plain")


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
        Kernel values computed (``n^2`` for the first gains, then the rows re-scored, or the
        candidates x the columns each pick changed, or ``n^2`` a step: see ``update``).
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


class _Kernel:
    """Blocks of kernel values k(a, b) of the rows of X, computed on demand.

    The exponent ``-|a - b|^2 / h^2`` of a block is one matrix product of ``[a, |a|^2, 1]``
    and ``[2b / h^2, -1 / h^2, -|b|^2 / h^2]``; ``k(x, x) = 1`` exactly.
    """

    def __init__(self, X: torch.Tensor, bandwidth: float, kernel: str):
        inv = 1.0 / (bandwidth * bandwidth)
        sq = torch.einsum("ij,ij->i", X, X)[:, None]
        ones = torch.ones_like(sq)
        self.left = torch.cat([X, sq, ones], dim=1)
        self.right = torch.cat([X * (2.0 * inv), -inv * ones, -inv * sq], dim=1)
        self.kernel = kernel
        self.entries = 0

    def block(self, rows: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """Kernel values of shape (len(rows), len(cols)) (``cols`` None: every sample)."""
        right = self.right if cols is None else self.right[cols]
        out = torch.mm(self.left[rows], right.T).clamp_max_(0.0)  # |a - b|^2 >= 0
        # each row's own column, exactly 0 (cols are sorted: the grown columns of a pick)
        at = rows if cols is None else torch.searchsorted(cols, rows).clamp_max_(
            cols.numel() - 1)
        own = torch.ones_like(rows, dtype=torch.bool) if cols is None else cols[at] == rows
        out[torch.arange(rows.numel(), device=out.device)[own], at[own]] = 0.0
        self.entries += out.numel()
        if self.kernel == "tophat":
            return out.gt_(-1.0)
        return out.exp_()


def _row_blocks(n_rows: int, n_cols: int, values: int):
    """Row ranges whose (rows, n_cols) blocks hold at most ``values`` kernel values."""
    step = max(1, values // max(1, n_cols))
    return ((start, min(n_rows, start + step)) for start in range(0, n_rows, step))


def _all_gains(kernel: _Kernel, m: torch.Tensor, w: torch.Tensor, chunk: int) -> torch.Tensor:
    """``sum_x w(x) max(k(c, x) - m(x), 0)`` of every sample c, ``chunk`` rows per block."""
    n = m.numel()
    gains = torch.empty(n, dtype=m.dtype, device=m.device)
    for start, stop in _row_blocks(n, n, chunk * n):
        rows = torch.arange(start, stop, device=m.device)
        gains[start:stop] = kernel.block(rows).sub_(m).clamp_min_(0.0) @ w
    return gains


def _lower_gains(gains: torch.Tensor, kernel: _Kernel, m: torch.Tensor, grown: torch.Tensor,
                 m_new: torch.Tensor, w: torch.Tensor, chunk: int) -> None:
    """Bring every gain from coverage ``m`` to the coverage that is ``m_new`` on the columns
    ``grown`` (``m`` elsewhere): on such a column a gain falls by
    ``w(x) (clamp(k(c, x), m(x), m_new(x)) - m(x))``; elsewhere nothing changes."""
    n = gains.numel()
    m_old, w_grown = m[grown], w[grown]
    for start, stop in _row_blocks(n, grown.numel(), chunk * n):
        rows = torch.arange(start, stop, device=m.device)
        block = kernel.block(rows, grown)
        gains[start:stop] -= torch.clamp(block, min=m_old, max=m_new).sub_(m_old) @ w_grown


def _exact_gains(kernel: _Kernel, rows: torch.Tensor, m: torch.Tensor,
                 w: torch.Tensor) -> torch.Tensor:
    """``sum_x w(x) max(k(c, x) - m(x), 0)`` of the candidates ``rows`` (one block)."""
    return kernel.block(rows).sub_(m).clamp_min_(0.0) @ w


def _lazy_pick(bounds: torch.Tensor, fresh: torch.Tensor, kernel: _Kernel, m: torch.Tensor,
               w: torch.Tensor, batch: int) -> int:
    """The plain greedy's pick from upper bounds of the gains (``-inf`` where not open).

    ``fresh`` marks the bounds that are exact gains under the current ``m``. Stale bounds at
    or above the tie threshold of the best exact gain are made exact, ``batch`` at a time,
    largest first, until none is left; a stale bound below it cannot be the best nor a tie
    (its gain is at most its bound), so the lowest index among the exact gains at or above
    the threshold is the plain greedy's choice."""
    while True:
        exact = bounds.masked_fill(~fresh, -np.inf)
        best = exact.max()
        threshold = best - TIE_RTOL * best.abs() if torch.isfinite(best) else best
        stale = bounds.masked_fill(fresh, -np.inf)
        top, order = torch.topk(stale, min(batch, stale.numel()))
        order = order[top >= threshold] if torch.isfinite(threshold) else \
            order[torch.isfinite(top)]
        if not order.numel():
            return int(torch.nonzero(exact >= threshold)[0, 0])
        bounds[order] = _exact_gains(kernel, order, m, w)
        fresh[order] = True


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
    update: str = "lazy",
) -> HerdingResult:
    """Greedy maximisation of the (weighted) generalized coverage
    ``C(S) = (1/n) sum_x w(x) max_{s in L u S} k(x, s)``.

    Each step takes the candidate c (not labelled, not picked) of largest gain
    ``(1/n) sum_x w(x) max(k(c, x) - m(x), 0)``, where ``m(x) = max_{s in L u S} k(x, s)``
    (0 when L u S is empty), then sets ``m <- max(m, k(c, .))``. Gains within a relative
    ``TIE_RTOL`` of the best are ties and go to the lowest index (the released ``argmax``).

    ``C`` is a facility-location function, monotone submodular for weights >= 0: a gain can
    only fall as the picks grow, and the picked gains never increase. Three ways to the same
    picks (``update``):

    - ``"lazy"`` (default; Minoux's lazy greedy): the gains of the first step are exact
      (``n^2`` kernel values), later ones are upper bounds; a step makes exact, in batches,
      only the candidates whose bound reaches the tie threshold of the best exact gain
      (:func:`_lazy_pick`): typically a few rows of n kernel values per step.
    - ``"incremental"``: every gain kept exact from step to step. A pick raises m only on the
      samples it is now the most similar pick to (for a kernel that falls with the
      distance, about n / t samples at step t), so a step computes the kernel between every
      candidate and those columns: about ``n^2 ln B`` values over B picks.
    - ``"plain"``: every gain recomputed over all n samples at every step, ``B n^2`` values
      (the reference of the tests).

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
        Rows per kernel block against all n samples (default: blocks of about 128 MB); a
        block against fewer columns takes proportionally more rows.
    device : torch.device or str, optional
        Where the kernel blocks are computed (default: the CPU); float64 everywhere.
    update : {"lazy", "incremental", "plain"}
        How the gains follow the picks (above); the picks are the same.

    Returns
    -------
    HerdingResult
        ``picks`` (budget,), ``gains`` (budget,) and the number of kernel values computed.

    Memory O(n d + chunk_size n), never an n x n kernel.
    """
    X = torch.as_tensor(features).to(device=device or "cpu", dtype=torch.float64)
    n = X.shape[0]
    labelled = np.empty(0, np.int64) if labelled is None else \
        np.asarray(labelled, dtype=np.int64).reshape(-1)
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    _check_greedy_input(n, budget, labelled, weights, bandwidth, kernel)
    check_choice("update", update, UPDATES)
    w = (torch.ones(n, dtype=torch.float64) if weights is None
         else torch.from_numpy(weights)).to(X.device)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n, 8)
    kernels = _Kernel(X, float(bandwidth), kernel)
    m = torch.zeros(n, dtype=torch.float64, device=X.device)
    for start in range(0, labelled.size, chunk):
        rows = torch.from_numpy(labelled[start:start + chunk]).to(X.device)
        torch.maximum(m, kernels.block(rows).amax(dim=0), out=m)
    taken = torch.zeros(n, dtype=torch.bool, device=X.device)
    taken[torch.from_numpy(labelled).to(X.device)] = True
    gains = _all_gains(kernels, m, w, chunk)
    fresh = torch.ones(n, dtype=torch.bool, device=X.device)  # lazy: which gains are exact
    picks = np.empty(budget, dtype=np.int64)
    picked_gains = np.empty(budget)
    for t in range(budget):
        if t and update == "plain":
            gains = _all_gains(kernels, m, w, chunk)
        gains.masked_fill_(taken, -np.inf)
        if update == "lazy":
            pick = _lazy_pick(gains, fresh, kernels, m, w, batch=max(1, min(64, chunk)))
        else:
            best = gains.max()
            pick = int(torch.nonzero(gains >= best - TIE_RTOL * best.abs())[0, 0])
        picks[t], picked_gains[t] = pick, float(gains[pick]) / n
        row = kernels.block(torch.tensor([pick], device=X.device))[0]
        grown = torch.nonzero(row > m).flatten()
        if update == "incremental" and t + 1 < budget and grown.numel():
            _lower_gains(gains, kernels, m, grown, row[grown], w, chunk)
        fresh.fill_(False)
        m[grown] = row[grown]
        taken[pick] = True
    return HerdingResult(picks, picked_gains, kernels.entries)


class MaxHerding(Selector):
    """Pick the samples that most increase the generalized coverage of the pool.

    Features are L2-normalised (``normalize``) and the kernel is
    ``k(x, y) = exp(-|x - y|^2 / h^2)`` with ``h = bandwidth`` (1.0 in the released scripts).
    The picks maximise ``C(S) = (1/n) sum_x max_{s in S} k(x, s)`` greedily
    (:func:`herding_greedy`, exact, every gain kept up to date; ties: the lowest index, as
    the released ``argmax``). With ``kernel="tophat"`` (``1[|x - y| < h]``) it is
    ProbCover's greedy with δ = h.

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
        (kernel values computed), ``gains`` (each pick's marginal gain, in pick order) and, on a
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
        log.info("maxherding: %d picks, %d kernel values computed (n = %d)", budget,
                 result.evaluations, len(X))
        return result.picks
