"""Row-batch access to a (possibly file-backed) pool, as NFPF and its SFLMs read it.

:class:`FloatRows` is the one row-view type of the method layer: the SFLM
(:mod:`nfpf.method.sflm`) reads an instance batch by batch instead of ``np.asarray``-ing
it, so a memmapped pool is never copied whole into memory.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import torch

from nfpf.core.selection import Pool

__all__ = ["FloatRows", "PixelRows", "column_mean", "device_rows", "is_file_backed"]


class FloatRows:
    """Row access to a (possibly file-backed) 2-D array, each read returned as float32.

    ``rows[i:j]`` and ``rows[index_array]`` read only those rows, so a memmapped pool is
    never copied whole. Values equal those of ``np.asarray(array, dtype=np.float32)``.

    Parameters
    ----------
    array : ndarray of shape (n, ...)
        Rows of any float or integer dtype; trailing axes are flattened per row.
    """

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = (int(array.shape[0]), int(np.prod(array.shape[1:], dtype=np.int64)))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, block: np.ndarray) -> np.ndarray:
        out = np.asarray(block.reshape(len(block), -1), dtype=np.float32)
        return out if out.flags.writeable else out.copy()  # read-only memmap rows

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.asarray([key])][0]
        if not isinstance(key, slice):
            key = np.asarray(key)
            if key.dtype == bool:
                key = np.flatnonzero(key)
        return self._convert(np.asarray(self.array[key]))


class PixelRows(FloatRows):
    """Streamed :meth:`Pool.pixels`: rows of ``2 * images - 1`` (or the features as float32
    when the pool has no images), computed per read with the same float32 operations."""

    def __init__(self, pool: Pool) -> None:
        self.has_images = pool.images is not None
        super().__init__(pool.images if self.has_images else pool.features)

    def _convert(self, block: np.ndarray) -> np.ndarray:
        if not self.has_images:
            return super()._convert(block)
        out = np.multiply(block.reshape(len(block), -1), 2.0, dtype=np.float32)
        out -= 1.0
        return out


def is_file_backed(array: Any) -> bool:
    """True when ``array`` (or an array it is a view of) is a memory map of a file."""
    seen = 0
    while array is not None and seen < 32:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
        seen += 1
    return False


def column_mean(X: Any, batch_size: int = 8192) -> np.ndarray:
    """Float64 column mean of X (array or :class:`FloatRows`), read in row batches."""
    total = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, X.shape[0], batch_size):
        total += np.asarray(X[start:start + batch_size]).sum(0, dtype=np.float64)
    return total / X.shape[0]


def device_rows(X: Any, device: torch.device, batch_size: int) -> torch.Tensor:
    """The float32 rows of ``X`` (array or :class:`FloatRows`) as one tensor on ``device``,
    copied in row batches (a file-backed pool is never read whole into host memory)."""
    out = torch.empty(X.shape, dtype=torch.float32, device=device)
    for start in range(0, X.shape[0], batch_size):
        block = np.asarray(X[start:start + batch_size], dtype=np.float32)
        out[start:start + batch_size] = torch.from_numpy(block).to(device)
    return out
