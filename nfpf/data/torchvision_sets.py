"""MNIST, CIFAR-10 and CIFAR-100 through torchvision's dataset classes.

Nothing is downloaded unless the user passes ``download=True`` (``dataset.download=true``);
without it the files must already be under the data root in torchvision's layout:
``<root>/MNIST/raw/*-ubyte``, ``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from nfpf.data.base import Dataset, register_dataset
from nfpf.data.common import missing_dataset, uint8_dataset

logger = logging.getLogger(__name__)

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@register_dataset("mnist")
def load_mnist(
    root: Path, download: bool = False, max_per_class: int | None = None, split_seed: int = 0
) -> Dataset:
    """MNIST: pool = the 60,000 training images, test = the 10,000 test images, (1, 28, 28).

    Parameters
    ----------
    root : Path
        Data root holding ``MNIST/raw/`` (torchvision layout).
    download : bool, default False
        Let torchvision download the files into ``root`` when they are missing.
    max_per_class : int, optional
        Keep at most this many random images per class in each split (quick runs).
    split_seed : int, default 0
        Seeds the subsampling.
    """
    from torchvision.datasets import MNIST

    raw = Path(root) / "MNIST" / "raw"
    if not download and not all((raw / f).exists() for f in _MNIST_FILES):
        raise missing_dataset("mnist", raw, root, downloadable=True,
                              what="the four uncompressed IDX files " + ", ".join(_MNIST_FILES))
    splits = []
    for train in (True, False):
        try:
            ds = MNIST(str(root), train=train, download=bool(download))
        except RuntimeError as err:  # torchvision: "Dataset not found..."
            raise missing_dataset("mnist", raw, root, downloadable=True) from err
        splits.append((ds.data.numpy()[:, None, :, :], ds.targets.numpy()))
    return uint8_dataset("mnist", splits[0], splits[1], [str(d) for d in range(10)],
                   max_per_class, split_seed)


def _load_cifar(
    name: str, cls_name: str, folder: str, root: Path, download: bool,
    max_per_class: int | None, split_seed: int,
) -> Dataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    location = Path(root) / folder
    if not download and not location.is_dir():
        raise missing_dataset(name, location, root, downloadable=True,
                              what=f"torchvision's {cls_name} python-pickle folder")
    splits, classes = [], None
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=bool(download))
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
            raise missing_dataset(name, location, root, downloadable=True,
                                  what=f"{cls_name} files, complete and uncorrupted") from err
        images = np.ascontiguousarray(np.asarray(ds.data).transpose(0, 3, 1, 2))  # NHWC->NCHW
        splits.append((images, np.asarray(ds.targets, dtype=np.int64)))
        classes = list(ds.classes)
    return uint8_dataset(name, splits[0], splits[1], classes, max_per_class, split_seed)


@register_dataset("cifar10")
def load_cifar10(
    root: Path, download: bool = False, max_per_class: int | None = None, split_seed: int = 0
) -> Dataset:
    """CIFAR-10 (torchvision): pool = 50,000 train, test = 10,000, (3, 32, 32), 10 classes.

    Options as for :func:`load_mnist`; files in ``<root>/cifar-10-batches-py``.
    """
    return _load_cifar("cifar10", "CIFAR10", "cifar-10-batches-py", root, download,
                       max_per_class, split_seed)


@register_dataset("cifar100")
def load_cifar100(
    root: Path, download: bool = False, max_per_class: int | None = None, split_seed: int = 0
) -> Dataset:
    """CIFAR-100 (torchvision, fine labels): pool = 50,000, test = 10,000, (3, 32, 32), 100 classes.

    Options as for :func:`load_mnist`; files in ``<root>/cifar-100-python``.
    """
    return _load_cifar("cifar100", "CIFAR100", "cifar-100-python", root, download,
                       max_per_class, split_seed)
