"""TED: sequential transductive experimental design (Yu, Bi, Tresp, ICML 2006)."""

from __future__ import annotations

import logging
from numbers import Real

import numpy as np
import torch

from nfpf.baselines.neighbors import as_float_array
from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.selection import Pool, Selector, candidate_subset, check_choice, check_param

__all__ = ["TED", "rbf_gamma", "rbf_kernel", "ted_kernel", "ted_linear"]

log = logging.getLogger(__name__)


class TED(Selector):
    """Sequential TED: pick ``argmax_x ||K[:, x]||^2 / (K[x, x] + mu)``, then deflate.

    After each pick x the kernel is deflated, ``K <- K - K[:, x] K[x, :] / (K[x, x] + mu)``,
    and the next pick maximises the same criterion on the deflated kernel (B rounds).

    The deflated kernel is never formed. Writing ``u_t = K_{t-1}[:, x_t] / sqrt(K_{t-1}[x_t,
    x_t] + mu)``, ``K_t = K - U_t U_t^T``; the squared column norms and the diagonal are
    updated from ``K_{t-1} u_t`` in O(n t) per pick, so the result equals the literal
    algorithm (tested against it):

    * ``kernel="linear"`` (K = X X^T, rank <= d) runs on the whole pool in feature space,
      ``K_t = X M_t X^T`` with a d × d ``M_t``: time O(n B d + d B^2), memory O(n d + d B).
    * ``kernel="rbf"`` (``exp(-gamma ||x - y||^2)``) stores the kernel of the candidates,
      ``m = min(n, max(max_candidates, B))`` samples drawn without replacement with the
      selection's seed (all n when n <= max_candidates): time O(m^2 (d + B)) (O(m^3 + m B^2)
      when B > m / 16, via K^2), memory O(m^2 + m B). Picks come from the candidates and the
      criterion is evaluated on them (the authors' code restricts the argmax to a random
      candidate subset too, but keeps the full n × n kernel). ``info_`` records the subset.

    Picked samples are excluded from later picks (the authors' code does not exclude them;
    after deflation their criterion is at most about ``mu / (K[x, x] + mu)`` of its value, so
    this only matters where it would have returned a duplicate).

    Parameters
    ----------
    kernel : {"rbf", "linear"}
    mu : float
        Ridge regulariser, > 0 (authors' code default: 10e-4).
    gamma : float, optional
        RBF width; ``None``: ``1 / (d * X.var())`` (scikit-learn's ``"scale"``).
    max_candidates : int or None
        RBF only: candidate subset size above which the pool is subsampled (None: never;
        memory then grows as n^2).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the RBF kernel and its deflation are computed: ``"cpu"`` (the reference), a GPU
        (the same torch arithmetic, so the same picks up to the GPU's summation order), or
        ``"auto"`` (the GPU when one is visible). GPU memory O(m^2 + m B), bounded by
        ``max_candidates``. The linear kernel always runs in float64 numpy on the CPU.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        mu: float = 1e-3,
        gamma: float | None = None,
        max_candidates: int | None = 5000,
        device: str = "auto",
    ):
        self.kernel = kernel
        self.mu = mu
        self.gamma = gamma
        self.max_candidates = max_candidates
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        check_choice("kernel", self.kernel, ("rbf", "linear"))
        check_param("mu", self.mu, Real, low=0, closed="neither")
        check_param("gamma", self.gamma, Real, low=0, closed="neither", also=(None,),
                    hint=" (None: the scale heuristic)")
        check_param("max_candidates", self.max_candidates, low=1, also=(None,),
                    hint=" (None: never subsample)")
        nfpf_device.check_device(self.device)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        X = as_float_array(pool.features)
        n = pool.n
        if self.kernel == "linear":
            self.info_ = {"kernel": "linear", "candidates": n}
            return ted_linear(X, budget, self.mu)
        gamma = self.gamma if self.gamma is not None else rbf_gamma(X)
        subset = candidate_subset(n, budget, self.max_candidates, seed, "ted")
        candidates = np.arange(n) if subset is None else subset
        self.info_ = {"kernel": "rbf", "gamma": float(gamma), "candidates": int(candidates.size),
                      "candidate_subset": subset is not None}
        if gpu is None:
            return candidates[ted_kernel(rbf_kernel(X[candidates], gamma), budget, self.mu)]
        self.info_["device"] = str(gpu)
        with nfpf_device.gpu_memory_guard("ted", "selector.max_candidates"):
            picks = ted_kernel(rbf_kernel(X[candidates], gamma, gpu), budget, self.mu)
        return candidates[picks]


def rbf_gamma(X: np.ndarray) -> float:
    """scikit-learn's ``"scale"`` width, ``1 / (d * X.var())`` (1 for constant features)."""
    var = float(np.var(X, dtype=np.float64))
    return 1.0 / (X.shape[1] * var) if var > 0 else 1.0


def rbf_kernel(X: np.ndarray, gamma: float, device: torch.device | None = None,
               ) -> torch.Tensor:
    """``exp(-gamma ||x_i - x_j||^2)`` of the rows of X, shape (m, m), X's float dtype,
    computed on ``device`` (default: the CPU) from :func:`nfpf.core.kernels.center_distances`
    (torch, so that the GPU path is the same code)."""
    X = as_float_array(X)
    K = kernels.center_distances(X, X, squared=True, batch_size=len(X),
                                 device=device or "cpu", dtype=None)
    return K.mul_(-gamma).exp_()


def ted_kernel(K: torch.Tensor | np.ndarray, budget: int, mu: float) -> np.ndarray:
    """Sequential TED on an explicit symmetric kernel matrix (m, m); returns B indices.

    Runs on K's device; the per-pick state (norms, diagonal, picks) stays in float64 numpy.
    Time O(m^2 B) (or O(m^3 + m B^2) with K^2 when B > m / 16); memory O(m^2 + m B).
    """
    K = torch.as_tensor(K)
    m = K.shape[0]
    use_square = budget > m / 16
    K2 = torch.mm(K, K) if use_square else None
    state = _State(m, budget)
    state.norms[:] = (K2.diagonal() if use_square else (K * K).sum(dim=0)).double().cpu().numpy()
    state.diag[:] = K.diagonal().double().cpu().numpy()
    # One row per pick (u_s and K u_s), in K's precision; the first t rows are contiguous.
    U = torch.zeros((budget, m), dtype=K.dtype, device=K.device)
    KU = torch.zeros((budget, m), dtype=K.dtype, device=K.device)
    gram = torch.zeros((budget, budget), dtype=torch.float64, device=K.device)  # U U^T
    for t in range(budget):
        x = state.argmax(mu)
        sc = float(np.sqrt(state.diag[x] + mu))
        Ut, KUt = U[:t], KU[:t]
        ux = Ut[:, x].contiguous()
        # U u = (U K[:, x] - U U^T U[:, x]) / sc with U K[:, x] = (K U^T)[x] = KU[:, x]:
        # O(t^2) instead of a pass over U.
        Uu = (KUt[:, x].double() - torch.mv(gram[:t, :t], ux.double())) / sc
        # K_{t-1}[:, x] / sc (K is symmetric: its row x is column x, and contiguous).
        u = (K[x].double() - torch.mv(Ut.T, ux).double()) / sc
        if use_square:
            # K u = (K^2[:, x] - (K U^T) U[:, x]) / sc.
            Ku = (K2[x].double() - torch.mv(KUt.T, ux).double()) / sc
        else:
            Ku = torch.mv(K, u.to(K.dtype)).double()
        K_prev_u = Ku - torch.mv(Ut.T, Uu.to(K.dtype)).double()
        U[t], KU[t] = u, Ku
        gram[t, :t] = gram[:t, t] = Uu
        gram[t, t] = u @ u
        state.update(t, x, u.cpu().numpy(), K_prev_u.cpu().numpy(),
                     u_norm2=float(gram[t, t]))
        if budget >= 200 and (t + 1) % (budget // 10) == 0:
            log.info("ted: %d/%d selected", t + 1, budget)
    return state.selected


def ted_linear(X: np.ndarray, budget: int, mu: float) -> np.ndarray:
    """Sequential TED with the linear kernel ``K = X X^T``, in feature space.

    ``K_t = X M_t X^T`` with ``M_0 = I`` and ``M_t = M_{t-1} - a_t a_t^T``; ``u_t = X a_t``.
    Time O(n B d + d B^2); memory O(n d + d B).
    """
    Xd = np.asarray(X, dtype=np.float64)
    n, d = Xd.shape
    G = Xd.T @ Xd
    A = np.zeros((d, budget))
    state = _State(n, budget)
    state.norms[:] = np.einsum("ij,jk,ik->i", Xd, G, Xd)
    state.diag[:] = np.einsum("ij,ij->i", Xd, Xd)
    for t in range(budget):
        x = state.argmax(mu)
        c = state.diag[x] + mu
        v = Xd[x]
        a = (v - A[:, :t] @ (A[:, :t].T @ v)) / np.sqrt(c)  # M_{t-1} x_x / sqrt(c)
        Ga = G @ a
        MGa = Ga - A[:, :t] @ (A[:, :t].T @ Ga)
        u, K_prev_u = (Xd @ np.stack([a, MGa], axis=1)).T
        A[:, t] = a
        state.update(t, x, u, K_prev_u, u_norm2=float(a @ Ga))
    return state.selected


class _State:
    """Squared column norms and diagonal of the deflated kernel, and the picks so far."""

    def __init__(self, m: int, budget: int):
        self.norms = np.empty(m)
        self.diag = np.empty(m)
        self.taken = np.zeros(m, dtype=bool)
        self.selected = np.empty(budget, dtype=np.int64)

    def argmax(self, mu: float) -> int:
        score = self.norms / (np.maximum(self.diag, 0.0) + mu)
        score[self.taken] = -np.inf
        return int(np.argmax(score))

    def update(self, t: int, x: int, u: np.ndarray, K_prev_u: np.ndarray,
               u_norm2: float) -> None:
        """Deflate by ``u u^T`` given ``K_{t-1} u`` and ``||u||^2``."""
        self.norms -= 2.0 * u * K_prev_u - u * u * u_norm2
        np.maximum(self.norms, 0.0, out=self.norms)
        self.diag -= u * u
        self.taken[x] = True
        self.selected[t] = x
