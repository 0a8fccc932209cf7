"""Helpers shared by the file-based loaders: errors, paths, subsampling, building a Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nfpf.core.selection import check_whole
from nfpf.data.base import DATA_ROOT_ENV, Dataset, DatasetNotFoundError

__all__ = [
    "DatasetFormatError",
    "missing_dataset",
    "require_path",
    "subsample_per_class",
    "uint8_dataset",
]


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what its loader expects."""


def missing_dataset(
    dataset: str, path: Path, root: Path, *, downloadable: bool = False, what: str = ""
) -> DatasetNotFoundError:
    """The error for a dataset whose files are not found: where we looked and how to fix it."""
    path = Path(path).absolute()
    fixes = [
        f"point the data root at the directory that holds it: `paths.data_root=/path/to/data` "
        f"(Hydra override) or `export {DATA_ROOT_ENV}=/path/to/data`"
    ]
    if downloadable:
        fixes.append(f"or let torchvision download it: `dataset.download=true` "
                     f"(load_dataset({dataset!r}, download=True))")
    expected = f" ({what})" if what else ""
    root = Path(root).absolute()
    if not path.is_relative_to(root):
        # an absolute path the user gave: the data root played no part, so do not point there
        return DatasetNotFoundError(
            f"Dataset {dataset!r} not found: {path}{expected} does not exist. An absolute "
            f"path is used as given; fix it, or give a path relative to the data root {root}."
        )
    root_note = "" if root.is_dir() else ", which does not exist"
    return DatasetNotFoundError(
        f"Dataset {dataset!r} not found: looked for {path}{expected} under the data root "
        f"{root}{root_note}. To fix: " + "; ".join(fixes) + "."
    )


def require_path(
    dataset: str, path: str | Path, root: Path, *, downloadable: bool = False, what: str = ""
) -> Path:
    """``path`` (``~`` expanded; a relative one taken relative to the data root ``root``) if
    it exists, else raise :func:`missing_dataset`'s error."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        path = Path(root) / path
    if not path.exists():
        raise missing_dataset(dataset, path, root, downloadable=downloadable, what=what)
    return path


def subsample_per_class(
    labels: np.ndarray, max_per_class: int | None, seed: int
) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` random samples of each class.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    max_per_class : int or None
        None keeps everything.
    seed : int
        Seeds the choice (``np.random.default_rng(seed)``).

    Returns
    -------
    ndarray of shape (m,), int64, sorted
    """
    labels = np.asarray(labels)
    if max_per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    max_per_class = check_whole("max_per_class", max_per_class, low=1)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) > max_per_class:
            members = rng.choice(members, size=int(max_per_class), replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def uint8_dataset(
    name: str,
    pool: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    max_per_class: int | None = None,
    split_seed: int = 0,
) -> Dataset:
    """A :class:`Dataset` of uint8 images: each split subsampled (optionally), scaled to [0, 1].

    Parameters
    ----------
    name : str
    pool, test : (images, labels)
        uint8 images of shape (n, C, H, W) and their labels.
    class_names : list of str
    max_per_class : int, optional
        Keep at most this many random images per class in each split
        (:func:`subsample_per_class` seeded ``split_seed`` for the pool, ``split_seed + 1``
        for the test split).
    split_seed : int, default 0

    Returns
    -------
    Dataset
        Images float32 in [0, 1], labels int64.
    """
    parts = []
    for offset, (images, labels) in enumerate((pool, test)):
        keep = subsample_per_class(labels, max_per_class, split_seed + offset)
        parts.append((images[keep].astype(np.float32) / np.float32(255.0),
                      np.asarray(labels)[keep].astype(np.int64)))
    (pool_x, pool_y), (test_x, test_y) = parts
    return Dataset(
        name=name,
        pool_images=pool_x,
        pool_labels=pool_y,
        test_images=test_x,
        test_labels=test_y,
        class_names=class_names,
        image_shape=tuple(pool_x.shape[1:]),
    )
