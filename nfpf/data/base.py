"""The common structure every dataset loader returns, and the registry of loaders."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfpf.core.selection import Pool

__all__ = [
    "DATA_ROOT_ENV",
    "Dataset",
    "DatasetNotFoundError",
    "available_datasets",
    "default_data_root",
    "load_dataset",
    "register_dataset",
]

#: Environment variable that overrides the configured data root.
DATA_ROOT_ENV = "NFPF_DATA_ROOT"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the data root says they are."""


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset split into a pool (to select from) and a test split.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"digits"``.
    pool_images : ndarray of shape (n, *image_shape), float32 in [0, 1]
        The unlabeled pool. Vector datasets (e.g. Isolet) are min-max scaled to [0, 1].
    pool_labels : ndarray of shape (n,), int64 in 0..K-1
        Labels of the pool; read only by evaluation, never handed to a selector.
    test_images : ndarray of shape (m, *image_shape), float32 in [0, 1]
    test_labels : ndarray of shape (m,), int64 in 0..K-1
    class_names : list of str, length K
    image_shape : tuple of int
        ``(channels, height, width)`` for images, ``(d,)`` for vector data.
    """

    name: str
    pool_images: np.ndarray
    pool_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    image_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        for split in ("pool", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if len(images) != len(labels):
                raise ValueError(
                    f"{self.name}: {split} has {len(images)} images but {len(labels)} labels."
                )
            if tuple(images.shape[1:]) != tuple(self.image_shape):
                raise ValueError(
                    f"{self.name}: {split} images have shape {images.shape[1:]}, expected "
                    f"{self.image_shape}."
                )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return len(self.image_shape) == 3

    def flat(self, split: str = "pool") -> np.ndarray:
        """Flattened pixels of ``split`` ("pool" or "test"), shape (n, prod(image_shape))."""
        images = getattr(self, f"{split}_images")
        return images.reshape(len(images), -1)

    def pool_view(self, features: np.ndarray) -> Pool:
        """What a selector may see of this dataset: features and images, never labels."""
        return Pool(features=features, images=self.pool_images, n_classes=self.n_classes)


_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a loader ``fn(root: Path, **options) -> Dataset`` under ``name``."""

    def decorator(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn

    return decorator


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_LOADERS)


def default_data_root() -> Path:
    """The data root used when none is configured.

    ``$NFPF_DATA_ROOT`` if set; else ``../shared/data`` beside the project checkout if it
    exists; else ``~/.cache/nfpf/data``.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    if beside_checkout.is_dir():
        return beside_checkout
    return Path.home() / ".cache" / "nfpf" / "data"


def load_dataset(name: str, root: str | os.PathLike | None = None, **options) -> Dataset:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        A name from :func:`available_datasets`.
    root : path, optional
        Data root; ``$NFPF_DATA_ROOT`` overrides it, and :func:`default_data_root` is used
        when neither is given.
    **options
        Loader-specific options (e.g. ``test_fraction`` and ``split_seed`` for .mat sets).
    """
    if name not in _LOADERS:
        raise ValueError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(available_datasets())}."
        )
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        root = env
    root_path = Path(root).expanduser() if root not in (None, "") else default_data_root()
    loader = _LOADERS[name]
    params = inspect.signature(loader).parameters
    accepted = list(params)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise ValueError(
            f"Dataset {name!r} has no option(s) {', '.join(unknown)}. "
            f"Its options: {', '.join(accepted) or 'none'}."
        )
    return loader(root_path, **options)
