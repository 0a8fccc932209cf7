"""USPS handwritten digits, standard split, from ``<root>/usps/usps.h5``.

The file has HDF5 groups ``train`` (7,291) and ``test`` (2,007), each with ``data``
(n x 256 float32 in [0, 1], 16 x 16 row-major) and ``target`` (digits 0-9). The
11,000-image ``USPS.mat`` variant (no official split) is ``usps_mat`` in :mod:`nfpf.data.mat`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nfpf.data.base import Dataset, register_dataset
from nfpf.data.common import DatasetFormatError, require_path, subsample_per_class

USPS_FILE = Path("usps") / "usps.h5"


@register_dataset("usps")
def load_usps(root: Path, max_per_class: int | None = None, split_seed: int = 0) -> Dataset:
    """USPS, standard split: pool = 7,291 train images, test = 2,007, shape (1, 16, 16).

    Parameters
    ----------
    root : Path
        Data root holding ``usps/usps.h5``.
    max_per_class : int, optional
        Keep at most this many random images per class in each split (quick runs).
    split_seed : int, default 0
        Seeds the subsampling.
    """
    import h5py

    path = require_path("usps", USPS_FILE, root, what="HDF5 with train/test groups")
    parts = []
    with h5py.File(path, "r") as f:
        for offset, group in enumerate(("train", "test")):
            if group not in f or "data" not in f[group] or "target" not in f[group]:
                found = {k: sorted(f[k].keys()) if hasattr(f[k], "keys") else "dataset"
                         for k in f}
                raise DatasetFormatError(
                    f"{path}: expected groups 'train' and 'test' each holding 'data' and "
                    f"'target'; found {found}."
                )
            data = np.asarray(f[group]["data"][()], dtype=np.float32)
            target = np.asarray(f[group]["target"][()]).reshape(-1).astype(np.int64)
            if data.ndim != 2 or data.shape[1] != 256 or len(data) != len(target):
                raise DatasetFormatError(
                    f"{path}: {group}/data has shape {data.shape} and {group}/target "
                    f"{target.shape}; expected (n, 256) and (n,)."
                )
            if target.size and (target.min() < 0 or target.max() > 9):
                raise DatasetFormatError(
                    f"{path}: {group}/target spans {target.min()}..{target.max()}; expected "
                    f"digits 0-9."
                )
            keep = subsample_per_class(target, max_per_class, split_seed + offset)
            images = np.clip(data[keep], 0.0, 1.0).reshape(-1, 1, 16, 16)
            parts.append((np.ascontiguousarray(images), target[keep]))
    (pool_x, pool_y), (test_x, test_y) = parts
    return Dataset(
        name="usps",
        pool_images=pool_x,
        pool_labels=pool_y,
        test_images=test_x,
        test_labels=test_y,
        class_names=[str(d) for d in range(10)],
        image_shape=(1, 16, 16),
    )
