"""The pool ``nfpf-select`` chooses from: a folder of images or a feature file, read into one
:class:`Source` (the items' names and paths, their pixels or feature vectors)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfpf.app.folder import (
    image_cache_key,
    load_cached_images,
    read_images,
    save_cached_images,
    scan_folder,
)
from nfpf.app.options import FEATURE_FILE_SUFFIXES, Request, SelectError, is_within
from nfpf.data.images import IMAGE_EXTENSIONS

__all__ = ["NAME_COLUMNS", "Source", "load_feature_file", "read_feature_file", "read_folder",
           "read_source"]

log = logging.getLogger(__name__)

#: Columns of a .csv/.parquet feature file that name the rows (the first one present wins).
NAME_COLUMNS = ("path", "id")


@dataclass
class Source:
    """The usable items of the input, in index order.

    Attributes
    ----------
    names : list of str
        Path relative to the input folder (folder), or the ``path``/``id`` column ("" when
        the feature file has none).
    absolute : list of str
        Absolute paths ("" when unknown).
    n_files : int
        Image files found (folder) or rows (feature file).
    images : ndarray of shape (n, C, H, W), uint8, or None
        Decoded pixels (folder only).
    features : ndarray of shape (n, d), float32, or None
        The feature file's vectors (feature file only).
    cache_key : str or None
        Key of the decoded images in the cache (folder with a cache only).
    """

    names: list[str]
    absolute: list[str]
    n_files: int
    images: np.ndarray | None = None
    features: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_ignored: int = 0
    name_column: str | None = None
    cache_key: str | None = None
    images_cache: str = "off"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.names)


def load_feature_file(path: str | os.PathLike) -> tuple[np.ndarray, list[str] | None, str | None]:
    """Read a feature file: one row per sample.

    Parameters
    ----------
    path : .npy (a 2-D numeric array), .csv or .parquet (numeric columns; an optional column
        named ``path`` or ``id`` names the rows and is not a feature)

    Returns
    -------
    features : ndarray of shape (n, d), float32
    names : list of str of length n, or None
    name_column : "path", "id" or None
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        X, names, name_column = _read_npy(path), None, None
    elif suffix in (".csv", ".parquet"):
        X, names, name_column = _read_table(path, suffix)
    else:
        raise SelectError(f"input={path} is a file of an unsupported type {suffix!r}: give a "
                          f"folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    if X.shape[0] == 0:
        raise SelectError(f"{path} has no rows: there is nothing to select from.")
    X = np.asarray(X, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite)
        raise SelectError(f"{path}: {bad_rows.size} row(s) contain NaN or infinite values "
                          f"(first rows: {bad_rows[:5].tolist()}). Remove or impute them.")
    return X, names, name_column


def _read_npy(path: Path) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SelectError(f"cannot read {path} as a .npy array: {err}") from None
    if X.ndim != 2:
        raise SelectError(f"{path} holds an array of shape {X.shape}; expected 2-D "
                          f"(n_samples, n_features). Reshape it, e.g. X.reshape(len(X), -1).")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise SelectError(f"{path} holds {X.dtype} values; expected numbers.")
    return X


def _read_table(path: Path, suffix: str) -> tuple[np.ndarray, list[str] | None, str | None]:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as err:
        raise SelectError(f"cannot read {path} as {suffix[1:]}: {err}") from None
    name_column = next((c for c in NAME_COLUMNS if c in frame.columns), None)
    names = None if name_column is None else [str(v) for v in frame[name_column].tolist()]
    data = frame.drop(columns=[c for c in NAME_COLUMNS if c in frame.columns])
    bad = [str(c) for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
    if bad:
        raise SelectError(
            f"{path}: column(s) {bad[:5]} are not numeric. Every column must be a number "
            f"except one optional name column called {' or '.join(NAME_COLUMNS)}.")
    if data.shape[1] == 0:
        raise SelectError(f"{path} has no numeric feature columns.")
    return data.to_numpy(dtype=np.float64), names, name_column


def _check_document_root(input_path: Path, document_root: Path) -> None:
    # Label Studio's local-files storage must be a subfolder of its document root, so the
    # root must be a strict parent of the input
    if not is_within(input_path, document_root) or input_path == document_root:
        raise SelectError(
            f"the input folder {input_path} is not inside label_studio.document_root="
            f"{document_root}; Label Studio URLs are paths relative to it, and its "
            f"local-files storage must be a subfolder of it. Set "
            f"label_studio.document_root to a folder that contains the input folder "
            f"(the value of LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), e.g. its parent.")


def read_folder(request: Request) -> Source:
    """Scan the input folder and decode its images (from the cache when it has them)."""
    root, opts = request.input_path, request.images
    scan = scan_folder(root)
    if scan.n == 0:
        raise SelectError(
            f"no images found in {root}: looked recursively for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} ({scan.n_ignored} other files ignored). "
            f"Point input= at a folder that contains images.")
    _check_document_root(root, request.document_root)
    log.info("found %d image files in %s (%d other files ignored)", scan.n, root, scan.n_ignored)
    start = time.perf_counter()
    key = image_cache_key(scan, opts.size, opts.mode, opts.resize)
    cache = request.cache_dir
    cached = load_cached_images(cache, key, scan) if cache is not None else None
    if cached is not None:
        log.info("images: cache hit (%s)", key)
        images, usable, skipped = cached
    else:
        images, usable, skipped = read_images(scan, opts.size, opts.mode, opts.resize,
                                              int(opts.num_workers), progress=request.progress)
        if cache is not None:
            save_cached_images(cache, key, scan, images, usable, skipped)
    if request.budget > len(usable):
        example = f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise SelectError(
            f"budget={request.budget} is larger than the number of usable images: "
            f"{len(usable)} of {scan.n} image files could be read, {len(skipped)} "
            f"unreadable{example}. Choose budget <= {len(usable)}. No output was written.")
    names = [scan.files[i] for i in usable]
    return Source(
        names=names, absolute=[os.fspath(scan.root / name) for name in names],
        n_files=scan.n, images=images, skipped=skipped, n_ignored=scan.n_ignored,
        cache_key=None if cache is None else key,
        images_cache="off" if cache is None else ("hit" if cached is not None else "miss"),
        timings={"scan": scan.seconds, "read": time.perf_counter() - start},
    )


def read_feature_file(request: Request) -> Source:
    """Read the input feature file; a ``path`` column gives the rows' image paths."""
    path = request.input_path
    start = time.perf_counter()
    X, file_names, name_column = load_feature_file(path)
    seconds = time.perf_counter() - start
    if request.budget > len(X):
        raise SelectError(f"budget={request.budget} is larger than the number of rows of "
                          f"{path} ({len(X)}). Choose budget <= {len(X)}.")
    names = file_names if file_names is not None else [""] * len(X)
    absolute = [""] * len(X)
    if name_column == "path":
        absolute = [os.path.normpath(p if os.path.isabs(p) else request.input_root / p)
                    for p in names]
        outside = [p for p in absolute if not is_within(Path(p), request.document_root)]
        if outside:
            raise SelectError(
                f"{len(outside)} path(s) of {path.name} (e.g. {outside[0]}) are not "
                f"inside label_studio.document_root={request.document_root}. Set "
                f"label_studio.document_root to a folder that contains them.")
    return Source(names=names, absolute=absolute, n_files=len(X), features=X,
                  name_column=name_column, timings={"read": seconds})


def read_source(request: Request) -> Source:
    """The input as a :class:`Source`: :func:`read_folder` or :func:`read_feature_file`."""
    return read_folder(request) if request.is_folder else read_feature_file(request)
