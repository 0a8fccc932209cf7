"""Core-set selection: greedy k-center (Sener & Savarese, ICLR 2018)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from nfpf.core import device as nfpf_device
from nfpf.core.kernels import sq_distances_to
from nfpf.core.resources import torch_threads
from nfpf.core.selection import Pool, Selector, check_choice, check_param

__all__ = ["Coreset", "kcenter_greedy"]

log = logging.getLogger(__name__)


class Coreset(Selector):
    """Greedy k-center: repeatedly add the sample farthest from everything selected so far.

    Keeps the n-vector of each sample's distance to its nearest selected sample and updates
    it with one new column per pick, so no n × n matrix is ever formed.

    Parameters
    ----------
    init : {"random", "mean"}
        First point: uniformly at random (seeded), or the sample nearest the pool mean.
    chunk_size : int
        Rows per distance block when updating the min-distance vector.
    num_threads : int or None
        torch threads during the selection (``None``: torch's setting). Each step is a
        memory-bound matrix-vector product, which one thread serves best on a shared CPU.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the greedy loop runs: ``"cpu"`` (the reference), a GPU, or ``"auto"`` (the GPU
        when one is visible). The same float32 arithmetic on either, so the same picks up to
        the GPU's summation order in the matrix-vector products.

    Time O(n·B·d); memory O(n + chunk_size·d) beyond the pool (a float32 pool, or a float32
    memmap, is used without a copy; other dtypes are converted once, O(n·d)).
    """

    def __init__(self, init: str = "random", chunk_size: int = 65536,
                 num_threads: int | None = 1, device: str = "auto"):
        self.init = init
        self.chunk_size = chunk_size
        self.num_threads = num_threads
        self.device = device
        self.check_params()

    def check_params(self) -> None:
        check_choice("init", self.init, ("random", "mean"))
        check_param("chunk_size", self.chunk_size, low=1)
        check_param("num_threads", self.num_threads, low=1, also=(None,),
                    hint=" (None: torch's setting)")
        nfpf_device.check_device(self.device)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        if gpu is None:
            with torch_threads(self.num_threads):
                return self._greedy(pool, budget, seed, torch.device("cpu"))
        self.info_["device"] = str(gpu)
        with nfpf_device.gpu_memory_guard("coreset", "selector.chunk_size"):
            return self._greedy(pool, budget, seed, gpu)

    def _greedy(self, pool: Pool, budget: int, seed: int, device: torch.device) -> np.ndarray:
        X = torch.from_numpy(np.ascontiguousarray(pool.features, dtype=np.float32)).to(device)
        # row norms in chunks: (X * X) at once would be a second pool-sized array
        sq_norms = torch.cat([(b * b).sum(dim=1) for b in X.split(self.chunk_size)])
        if self.init == "random":
            first = int(np.random.default_rng(seed).integers(pool.n))
        else:
            mean = X.mean(dim=0)
            first = int(sq_distances_to(X, sq_norms, mean, self.chunk_size).argmin())
        min_sq = torch.full((pool.n,), float("inf"), device=device)
        return kcenter_greedy(X, sq_norms, min_sq, budget, self.chunk_size, first=first)


def kcenter_greedy(X: torch.Tensor, sq_norms: torch.Tensor, min_sq: torch.Tensor, size: int,
                   chunk: int, first: int | None = None) -> np.ndarray:
    """Greedy k-center: ``size`` picks, each the row farthest from the centres so far.

    Parameters
    ----------
    X : Tensor of shape (n, d)
    sq_norms : Tensor of shape (n,)
        Squared norms of the rows of ``X``; their precision is the distances' precision.
    min_sq : Tensor of shape (n,)
        Each row's squared distance to its nearest centre so far (``inf``: no centre yet);
        updated in place.
    size : int
    chunk : int
        Rows per distance block.
    first : int, optional
        The first pick (default: the farthest row, like every later pick).

    Returns
    -------
    ndarray of shape (size,), int64: the picks in order; equal distances go to the first row.

    Time O(n·size·d); memory O(n + chunk·d).
    """
    selected = np.empty(size, dtype=np.int64)
    for t in range(size):
        pick = first if t == 0 and first is not None else int(min_sq.argmax())
        selected[t] = pick
        torch.minimum(min_sq, sq_distances_to(X, sq_norms, X[pick], chunk), out=min_sq)
        # -1 < any distance, so a selected sample (or its duplicate at distance 0 before
        # all unselected ones) is never picked twice.
        min_sq[pick] = -1.0
        if t % 200 == 199:
            log.info("k-center: %d/%d selected", t + 1, size)
    return selected
