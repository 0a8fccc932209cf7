"""Core-set selection: greedy k-center (Sener & Savarese, ICLR 2018)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from nfpf.core import device as nfpf_device
from nfpf.core.resources import torch_threads
from nfpf.core.selection import Pool, Selector

__all__ = ["Coreset"]

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
        if init not in ("random", "mean"):
            raise ValueError(f"init must be 'random' or 'mean'; got {init!r}.")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
        self.init = init
        self.chunk_size = int(chunk_size)
        self.num_threads = num_threads
        self.device = nfpf_device.check_device(device)

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
            mean = X.mean(dim=0, keepdim=True)
            first = int(_sq_dist_to(X, sq_norms, mean, self.chunk_size).argmin())
        min_dist = torch.full((pool.n,), float("inf"), device=device)
        selected = np.empty(budget, dtype=np.int64)
        selected[0] = first
        for t in range(budget):
            if t > 0:
                selected[t] = int(min_dist.argmax())
            new = _sq_dist_to(X, sq_norms, X[selected[t]][None, :], self.chunk_size)
            torch.minimum(min_dist, new, out=min_dist)
            # -1 < any distance, so a selected sample (or its duplicate at distance 0 before
            # all unselected ones) is never picked twice.
            min_dist[selected[t]] = -1.0
            if t % 200 == 199:
                log.info("coreset: %d/%d selected", t + 1, budget)
        return selected


def _sq_dist_to(X: torch.Tensor, sq_norms: torch.Tensor, y: torch.Tensor, chunk: int):
    """Squared Euclidean distances from every row of X to the single row y, chunked."""
    out = torch.empty(X.shape[0], device=X.device)
    y_sq = (y * y).sum()
    for start in range(0, X.shape[0], chunk):
        block = X[start:start + chunk]
        d = sq_norms[start:start + chunk] - 2.0 * (block @ y[0]) + y_sq
        out[start:start + chunk] = d.clamp_min_(0.0)
    return out

