"""MATLAB ``.mat`` datasets through one generic loader and one table.

Every set in :data:`MAT_SETS` is registered under its key (``coil20``, ``orl``, ...). A row
of the data matrix is one image stored in the order given by the table: ``"F"`` means
MATLAB's column-major order (``x.reshape(h, w, order="F")``), ``"C"`` row-major. v7.3 files
are HDF5; h5py returns their arrays transposed, which :func:`read_mat` undoes. Whichever
way the data matrix is stored (samples x features or features x samples), the sample axis
is the one whose length equals the number of labels. None of these sets has an official
split, so a seeded stratified split is made (options ``test_fraction`` and ``split_seed``).

To add a set, add a row to :data:`MAT_SETS` (and a ``conf/dataset/<name>.yaml``); to load a
one-off file without registering it use ``load_dataset("mat", file=..., image_shape=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfpf.data.base import Dataset, register_dataset
from nfpf.data.common import DatasetFormatError, require_path
from nfpf.data.splits import remap_labels, scale_01, stratified_split

logger = logging.getLogger(__name__)

__all__ = ["MAT_SETS", "VARIABLE_PAIRS", "MatSpec", "load_mat", "read_mat"]

#: (data, labels) variable-name pairs tried, in order, when a file's pair is not specified.
VARIABLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("X", "Y"),
    ("fea", "gnd"),
    ("DAT", "labels"),
    ("data", "label"),
)

#: How raw label values become the values remapped to 0..K-1.
LABEL_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda y: y,
    "minus_one": lambda y: y - 1,  # USPS.mat: gnd = digit + 1
    "mod10": lambda y: y % 10,  # Optdigits: label 10 is the digit 0
}

SCALES = ("auto", "255", "none", "minmax")
ORDERS = ("C", "F")


@dataclass(frozen=True)
class MatSpec:
    """One row of the table of registered .mat datasets.

    Attributes
    ----------
    file : str
        Path relative to the data root.
    variables : (str, str)
        Names of the data and label variables.
    image_shape : tuple of int
        ``(C, H, W)`` for images, ``(d,)`` for vector data.
    order : {"C", "F"}
        Pixel order of one row: ``"F"`` column-major (MATLAB), ``"C"`` row-major. For
        C > 1, ``"F"`` is MATLAB's (H, W, C) array and ``"C"`` is channel planes (C, H, W).
    scale : {"255", "none", "minmax", "auto"}
        ``"255"`` divides by 255, ``"none"`` keeps values already in [0, 1], ``"minmax"``
        scales the whole array to [0, 1] (:func:`nfpf.data.splits.scale_01`); ``"auto"``
        picks "255" for integer data, "none" for floats in [0, 1], else "minmax".
    labels : str
        Key of :data:`LABEL_MAPS` applied before remapping labels to 0..K-1.
    test_fraction : float
        Default fraction of each class put in the test split.
    """

    file: str
    variables: tuple[str, str]
    image_shape: tuple[int, ...]
    order: str = "F"
    scale: str = "255"
    labels: str = "identity"
    test_fraction: float = 0.3


#: The registered .mat datasets (see ``../shared/data/README.md`` for their sources).
#: test_fraction 0.3 keeps >= 10 images per class in the pool wherever a class has >= 15;
#: warpAR10P (13 per class) uses 0.23 so that its pool keeps 10 per class (test 3). Sets
#: with 10-11 per class (ORL, Yale, orlraws10P, pixraw10P, COIL100) keep 7 per class in the
#: pool (Yale 7-8): a pool of 10 would leave them no or a single test image per class.
MAT_SETS: dict[str, MatSpec] = {
    "coil20": MatSpec("ual/COIL20.mat", ("X", "Y"), (1, 32, 32), "F", scale="none"),
    "orl": MatSpec("ual/ORL.mat", ("X", "Y"), (1, 32, 32), "F"),
    "yale": MatSpec("ual/Yale.mat", ("X", "Y"), (1, 32, 32), "F"),
    "yaleb": MatSpec("ual/YaleB_32x32.mat", ("fea", "gnd"), (1, 32, 32), "F"),
    "pie": MatSpec("ual/PIE_32x32_subset.mat", ("fea", "gnd"), (1, 32, 32), "F"),
    "usps_mat": MatSpec("usps/USPS.mat", ("fea", "gnd"), (1, 16, 16), "C", labels="minus_one"),
    "isolet": MatSpec("ual/Isolet.mat", ("X", "Y"), (617,), "C", scale="minmax"),
    "warppie10p": MatSpec("ual/warpPIE10P.mat", ("X", "Y"), (1, 55, 44), "F"),
    "warpar10p": MatSpec("ual/warpAR10P.mat", ("X", "Y"), (1, 60, 40), "F", test_fraction=0.23),
    "orlraws10p": MatSpec("ual/orlraws10P.mat", ("X", "Y"), (1, 112, 92), "F"),
    # pixraw10P's grey levels only reach 62: min-max scaled so that images span [0, 1].
    "pixraw10p": MatSpec("ual/pixraw10P.mat", ("X", "Y"), (1, 100, 100), "F", scale="minmax"),
    "coil100": MatSpec("ual/COIL100_64_64.mat", ("DAT", "labels"), (1, 64, 64), "F"),
    "optdigits": MatSpec("ual/Optdigits.mat", ("data", "label"), (1, 32, 32), "C",
                         scale="none", labels="mod10"),
}


def _is_hdf5(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(str(path)))


def read_mat(path: Path, variables: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read numeric variables of a .mat file (v4/v5/v7 via scipy, v7.3 via h5py).

    Arrays are returned with MATLAB's shape: v7.3 arrays, which h5py reads transposed,
    are transposed back.

    Parameters
    ----------
    path : Path
    variables : sequence of str, optional
        Read only these (those present); all numeric variables when None.

    Returns
    -------
    dict name -> ndarray
        Numeric variables only; :func:`list_variables` lists every variable name.
    """
    path = Path(path)
    if _is_hdf5(path):
        import h5py

        out = {}
        with h5py.File(path, "r") as f:
            for name in f:
                if variables is not None and name not in variables:
                    continue
                obj = f[name]
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf":
                    out[name] = np.asarray(obj[()]).T
        return out
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=list(variables) if variables else None)
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as err:
        raise DatasetFormatError(f"{path}: not a readable MATLAB .mat file ({err}).") from err
    return {k: v for k, v in mat.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}


def list_variables(path: Path) -> list[str]:
    """Names of all variables in a .mat file."""
    path = Path(path)
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            return sorted(k for k in f if not k.startswith("#"))
    import scipy.io

    try:
        return sorted(name for name, _, _ in scipy.io.whosmat(str(path)))
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as err:
        raise DatasetFormatError(f"{path}: not a readable MATLAB .mat file ({err}).") from err


def _pick_variables(
    path: Path, found: list[str], variables: Sequence[str] | None
) -> tuple[str, str]:
    pairs = [tuple(variables)] if variables else list(VARIABLE_PAIRS)
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"variables must be two names [data, labels]; got {list(pair)}.")
        if pair[0] in found and pair[1] in found:
            return pair[0], pair[1]
    expected = " or ".join("/".join(p) for p in pairs)
    raise DatasetFormatError(
        f"{path}: expected the variables {expected} (data/labels); the file holds "
        f"{found or 'no variables'}. Pass `variables=[data_name, label_name]` for another layout."
    )


def _samples_first(path: Path, x: np.ndarray, n_labels: int, names: tuple[str, str]) -> np.ndarray:
    """Return ``x`` as (n_samples, n_features), whichever way it is stored."""
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1) if x.ndim > 2 and x.shape[0] == n_labels else x
    if x.ndim != 2:
        raise DatasetFormatError(
            f"{path}: variable {names[0]!r} has shape {x.shape}; expected a 2-D matrix."
        )
    if x.shape[0] == n_labels:
        return x
    if x.shape[1] == n_labels:
        return x.T
    raise DatasetFormatError(
        f"{path}: variable {names[0]!r} has shape {x.shape} but {names[1]!r} holds "
        f"{n_labels} labels; no axis of the data matches the number of labels."
    )


def _to_unit_range(path: Path, x: np.ndarray, scale: str) -> np.ndarray:
    scale = str(scale)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}; got {scale!r}.")
    if scale == "auto":
        if x.dtype.kind in "biu":
            scale = "255" if x.min() >= 0 and x.max() <= 255 else "minmax"
        else:
            scale = "none" if x.min() >= 0 and x.max() <= 1 else "minmax"
    if scale == "minmax":
        return scale_01(x)
    x = x.astype(np.float32)
    if scale == "255":
        x /= np.float32(255.0)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DatasetFormatError(
            f"{path}: values span [{x.min()}, {x.max()}] after scale={scale!r}, outside "
            f"[0, 1]; use scale='minmax'."
        )
    return x


def _reshape(path: Path, x: np.ndarray, image_shape: tuple[int, ...], order: str) -> np.ndarray:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}; got {order!r}.")
    n, d = x.shape
    if int(np.prod(image_shape)) != d:
        raise DatasetFormatError(
            f"{path}: rows have {d} values but image_shape {tuple(image_shape)} needs "
            f"{int(np.prod(image_shape))}."
        )
    if len(image_shape) == 1:
        return x
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W) or (d,); got {tuple(image_shape)}.")
    c, h, w = image_shape
    if order == "C":
        return x.reshape(n, c, h, w)
    # column-major (H, W, C): flat index = i + H*j + H*W*k  ==  C-order (C, W, H) reshape.
    return x.reshape(n, c, w, h).transpose(0, 1, 3, 2)


def load_mat(
    root: Path,
    file: str | Path | None = None,
    variables: Sequence[str] | None = None,
    image_shape: Sequence[int] | None = None,
    order: str = "C",
    scale: str = "auto",
    labels: str = "identity",
    test_fraction: float = 0.3,
    split_seed: int = 0,
    *,
    name: str = "mat",
) -> Dataset:
    """Load a labelled .mat file and split it (seeded, stratified) into pool and test.

    Parameters
    ----------
    root : Path
        Data root; a relative ``file`` is resolved against it.
    file : str or Path
        The .mat file (required).
    variables : [str, str], optional
        Data and label variable names; by default the first pair of
        :data:`VARIABLE_PAIRS` present in the file.
    image_shape : (C, H, W) or (d,), optional
        Shape of one sample; ``(d,)`` (vector data) when omitted.
    order : {"C", "F"}, default "C"
        Pixel order of a row (see :class:`MatSpec`).
    scale : {"auto", "255", "none", "minmax"}, default "auto"
        How values are brought to [0, 1] (see :class:`MatSpec`).
    labels : {"identity", "minus_one", "mod10"}, default "identity"
        Map applied to raw labels before they are remapped to 0..K-1.
    test_fraction : float in (0, 1), default 0.3
    split_seed : int, default 0
    name : str, default "mat"
        Name given to the returned :class:`Dataset`.

    Returns
    -------
    Dataset
        Images float32 (n, *image_shape) in [0, 1]; labels int64 in 0..K-1; class names are
        the (mapped) original label values as strings.
    """
    if not file:
        raise ValueError(
            f"dataset {name!r} needs the option file=<path to a .mat file> (absolute, or "
            f"relative to the data root), e.g. dataset.file=ual/ORL.mat."
        )
    path = require_path(name, file, root, what="a MATLAB .mat file")
    if labels not in LABEL_MAPS:
        raise ValueError(f"labels must be one of {list(LABEL_MAPS)}; got {labels!r}.")
    found = list_variables(path)
    x_name, y_name = _pick_variables(path, found, variables)
    arrays = read_mat(path, [x_name, y_name])
    if x_name not in arrays or y_name not in arrays:
        raise DatasetFormatError(
            f"{path}: variables {x_name!r} and {y_name!r} must be numeric arrays; found "
            f"{found}."
        )
    y_raw = arrays[y_name]
    if y_raw.ndim > 2 or (y_raw.ndim == 2 and min(y_raw.shape) != 1):
        raise DatasetFormatError(
            f"{path}: label variable {y_name!r} has shape {y_raw.shape}; expected a vector "
            f"of integer class labels."
        )
    y_raw = y_raw.reshape(-1)
    if not np.all(np.isfinite(y_raw)) or not np.all(y_raw == np.round(y_raw)):
        raise DatasetFormatError(f"{path}: labels in {y_name!r} are not all integers.")
    x = _samples_first(path, arrays[x_name], len(y_raw), (x_name, y_name))
    if not np.all(np.isfinite(x)):
        raise DatasetFormatError(f"{path}: {x_name!r} contains NaN or infinite values.")
    x = _to_unit_range(path, x, scale)
    shape = tuple(int(s) for s in image_shape) if image_shape else (x.shape[1],)
    images = np.ascontiguousarray(_reshape(path, x, shape, order), dtype=np.float32)

    y, values = remap_labels(LABEL_MAPS[labels](y_raw.astype(np.int64)))
    try:
        pool, test = stratified_split(y, float(test_fraction), int(split_seed))
    except ValueError as err:
        raise ValueError(
            f"{name}: cannot make a stratified split with test_fraction={test_fraction} "
            f"({len(y)} samples, {len(values)} classes, smallest class "
            f"{int(np.bincount(y).min())}): {str(err).rstrip('.')}. Choose test_fraction in "
            f"(0, 1) leaving at least one sample of every class on each side."
        ) from err
    logger.info("%s: %d pool / %d test samples, %d classes, shape %s",
                name, len(pool), len(test), len(values), shape)
    return Dataset(
        name=name,
        pool_images=images[pool],
        pool_labels=y[pool],
        test_images=images[test],
        test_labels=y[test],
        class_names=[str(v) for v in values],
        image_shape=shape,
    )


def _make_loader(name: str, spec: MatSpec) -> Callable[..., Dataset]:
    def load(root: Path, test_fraction: float = spec.test_fraction, split_seed: int = 0) -> Dataset:
        return load_mat(
            root, spec.file, name=name, variables=spec.variables,
            image_shape=spec.image_shape, order=spec.order, scale=spec.scale,
            labels=spec.labels, test_fraction=test_fraction, split_seed=split_seed,
        )

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = (
        f"{name}: ``{spec.file}`` ({'/'.join(spec.variables)}), samples of shape "
        f"{spec.image_shape}, seeded stratified split (default test_fraction "
        f"{spec.test_fraction})."
    )
    return load


for _name, _spec in MAT_SETS.items():
    register_dataset(_name)(_make_loader(_name, _spec))


# any labelled .mat file: load_dataset("mat", file="my.mat", image_shape=[1, 32, 32])
register_dataset("mat")(load_mat)
