"""Helpers shared by the file-based loaders: errors and subsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nfpf.data.base import DATA_ROOT_ENV, DatasetNotFoundError

__all__ = [
    "DatasetFormatError",
    "missing_dataset",
    "require_path",
    "subsample_per_class",
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
    dataset: str, path: Path, root: Path, *, downloadable: bool = False, what: str = ""
) -> Path:
    """Return ``path`` if it exists, else raise :func:`missing_dataset`'s error."""
    if not Path(path).exists():
        raise missing_dataset(dataset, path, root, downloadable=downloadable, what=what)
    return Path(path)


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
    if isinstance(max_per_class, bool) or int(max_per_class) != max_per_class or max_per_class < 1:
        raise ValueError(
            f"max_per_class must be a positive integer or null; got {max_per_class!r}."
        )
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) > max_per_class:
            members = rng.choice(members, size=int(max_per_class), replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep)).astype(np.int64)
