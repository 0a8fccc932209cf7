"""Datasets: one registry, one common structure (:class:`Dataset`).

Importing this package registers every loader: ``digits`` (embedded), ``mnist``, ``cifar10``,
``cifar100`` (torchvision), ``usps`` (usps.h5), the .mat sets of :data:`nfpf.data.mat.MAT_SETS`
and the generic ``mat``, ``image_folder`` and ``cifar10_jpg`` (JPEG archives).
"""

from nfpf.data import digits, image_folder, mat, torchvision_sets, usps  # noqa: F401  (register)
from nfpf.data.base import (
    DATA_ROOT_ENV,
    Dataset,
    DatasetNotFoundError,
    available_datasets,
    default_data_root,
    load_dataset,
    register_dataset,
)
from nfpf.data.common import DatasetFormatError

__all__ = [
    "DATA_ROOT_ENV",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "available_datasets",
    "default_data_root",
    "load_dataset",
    "register_dataset",
]
