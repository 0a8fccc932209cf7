"""Nearest-neighbour distances and kNN density, in bounded memory.

One home for the k-nearest-neighbour computations of TypiClust (typicality) and USL (density).

Conventions
-----------
* The neighbours of a sample are the ``k`` *other* samples closest to it in Euclidean distance.
  The sample itself is excluded by index, so an exact duplicate of it is a neighbour at
  distance 0. Hence ``k`` can be at most ``n - 1``.
* ``knn_density(X, k) = 1 / mean_{j in kNN(i)} ||x_i - x_j||`` (``squared=True``: the mean of
  squared distances). A sample with ``k`` exact duplicates has infinite density.

Distances are those of :func:`nfpf.core.kernels.knn`: block by block as
``|a|^2 + |b|^2 - 2 a.b`` with torch, in the input's float precision (float64 stays float64,
anything else becomes float32). Each block holds ``chunk_size`` rows against all ``n``
samples, so memory is O(chunk_size * n + n * k), never O(n^2).
"""

from __future__ import annotations

import numpy as np
import torch

from nfpf.core import kernels

__all__ = ["as_float_array", "auto_chunk_size", "knn_density", "knn_distances", "l2_normalize"]

#: Bytes of one distance block used when no chunk size is given.
DEFAULT_BLOCK_BYTES = 128 * 2**20


def as_float_array(X: np.ndarray) -> np.ndarray:
    """``X`` as a C-contiguous float64 (if already float64) or float32 array."""
    X = np.asarray(X)
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    return np.ascontiguousarray(X, dtype=dtype)


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` scaled to unit Euclidean norm, in ``X``'s float precision.

    An all-zero row has no direction: it is left at the origin (distance 1 from every unit
    row) rather than divided by zero, so it never turns into NaN.

    Parameters
    ----------
    X : ndarray of shape (n, d), float

    Returns
    -------
    ndarray of shape (n, d), C-contiguous, same dtype as ``X``.
    """
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(X / norms, dtype=X.dtype)


def auto_chunk_size(n_columns: int, itemsize: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block so that one (rows, n_columns) block takes about ``block_bytes``."""
    return int(max(1, min(max(n_columns, 1), block_bytes // max(1, n_columns * itemsize))))


def knn_distances(
    X: np.ndarray,
    k: int,
    *,
    squared: bool = False,
    chunk_size: int | None = None,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distances from every sample to its ``k`` nearest other samples, ascending.

    The CPU form of :func:`nfpf.core.kernels.knn`, in ``X``'s float precision, as arrays.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    k : int
        Number of neighbours, 1 <= k <= n - 1 (the sample itself is not its own neighbour).
    squared : bool
        Return squared Euclidean distances.
    chunk_size : int, optional
        Rows per distance block (default: blocks of about 128 MB).
    return_indices : bool
        Also return the neighbours' indices.

    Returns
    -------
    distances : ndarray of shape (n, k)
    indices : ndarray of shape (n, k), int64 (only with ``return_indices``)

    Time O(n^2 d); memory O(chunk_size * n + n * k).
    """
    X = as_float_array(X)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(len(X), X.itemsize)
    on_cpu, indices = kernels.knn(torch.from_numpy(X), k, squared=True, chunk_size=chunk)
    distances = on_cpu.numpy()
    if not squared:  # numpy's square root, as every caller of this helper takes it
        np.sqrt(distances, out=distances)
    if return_indices:
        return distances, indices.numpy()
    return distances


def knn_density(
    X: np.ndarray, k: int, *, squared: bool = False, chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """kNN density: 1 / mean distance to the ``k`` nearest other samples.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    k : int
        Number of neighbours, 1 <= k <= n - 1.
    squared : bool
        Average squared distances instead of distances (USL's released code does).
    chunk_size : int, optional
        Rows per distance block.
    device : str, optional
        A torch device (e.g. ``"cuda"``) for the distances, computed in float32 by
        :func:`nfpf.core.kernels.knn`; ``None``: the CPU path above.

    Returns
    -------
    density : ndarray of shape (n,), float64 (``inf`` where all k neighbours coincide with
    the sample).

    Time O(n^2 d); memory O(chunk_size * n + n * k).
    """
    if device is not None:  # float32 on the device, whatever X's precision
        on_device, _ = kernels.knn(kernels.as_device_tensor(X, device), k, squared=True,
                                   chunk_size=chunk_size)
        distances = on_device.cpu().numpy()
        if not squared:  # numpy's square root, as the CPU path takes it
            np.sqrt(distances, out=distances)
    else:
        distances = knn_distances(X, k, squared=squared, chunk_size=chunk_size)
    mean = distances.mean(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 / mean
