"""Image-folder datasets (torchvision ``ImageFolder`` layout), optionally shipped as archives.

Accepted layouts under ``path`` (absolute, or relative to the data root):

- ``path/<pool_split>/<class>/*.jpg`` and ``path/<test_split>/<class>/*.jpg``: the given split;
- ``path/<class>/*.jpg``: one split, divided by a seeded stratified split (``test_fraction``);
- a directory of ``.tar.gz`` / ``.tgz`` / ``.tar`` archives that unpack to one of the above,
  e.g. ``cifar10_jpg/{train,test}_<class>.tar.gz``. They are unpacked once into
  ``<cache_dir>/unpacked/<dir name>-<hash>/``: extraction goes to a temporary directory that
  is renamed when complete, so an interrupted unpack is redone rather than half used.

Images are decoded by :mod:`nfpf.data.images` (the rules ``nfpf-select`` uses too), without
its reduced-scale JPEG ``draft``, so pixels are those of a full decode. The decoded uint8
arrays are cached as ``.npy`` under ``<cache_dir>/decoded/``, keyed by
:func:`nfpf.data.images.decoded_images_key` (file names, sizes, modification times and the
image options), so a second load skips decoding. ``cache_dir`` defaults to
``$NFPF_CACHE_DIR`` or ``~/.cache/nfpf``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nfpf.data.base import Dataset, register_dataset
from nfpf.data.common import (
    DatasetFormatError,
    require_path,
    subsample_per_class,
    uint8_dataset,
)
from nfpf.data.images import (
    IMAGE_EXTENSIONS,
    MODES,
    ImageSizeError,
    decode_files,
    decode_image,
    decoded_images_key,
    file_stats,
    is_image_name,
    parse_image_size,
)
from nfpf.data.splits import stratified_split
from nfpf.io import cache_root, config_hash, write_npy_atomic

logger = logging.getLogger(__name__)

__all__ = ["list_image_tree", "load_image_folder", "unpack_archives"]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
#: Decoding threads (Pillow releases the GIL while decoding; the result does not depend on it).
DECODE_WORKERS = 4


def _archives(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _checked_members(archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, refusing absolute paths, ``..`` and anything but files/dirs."""
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetFormatError(f"{archive}: cannot read the archive ({err}).") from err
    for m in members:
        name = Path(m.name)
        if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
            raise DatasetFormatError(
                f"{archive}: refusing to unpack the member {m.name!r} (absolute path, '..' or "
                f"not a regular file or directory)."
            )
    return members


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a checked archive into ``dest``: with the ``tar`` program when there is one
    (several times faster on many small files), else with :mod:`tarfile`."""
    members = _checked_members(archive)
    tar = shutil.which("tar")
    if tar:
        try:
            subprocess.run([tar, "-x", "-f", str(archive), "-C", str(dest), "--no-same-owner"],
                           check=True, capture_output=True)
            return
        except (subprocess.CalledProcessError, OSError) as err:
            logger.warning("`tar` failed on %s (%s); falling back to tarfile", archive, err)
    with tarfile.open(archive) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without extraction filters; members checked above
            tf.extractall(dest, members=members)


def unpack_archives(archive_dir: Path, cache_root: Path, progress: bool = True) -> Path:
    """Unpack every archive in ``archive_dir`` once; return the unpacked tree.

    The target ``<cache_root>/unpacked/<dir name>-<hash of the archives>`` only appears when
    all archives are extracted (temporary directory + rename). Leftovers of interrupted
    unpacks on this host are removed.
    """
    archive_dir = Path(archive_dir)
    archives = _archives(archive_dir)
    key = config_hash([str(archive_dir.resolve()),
                       [(a.name, a.stat().st_size) for a in archives]], length=12)
    parent = Path(cache_root) / "unpacked"
    target = parent / f"{archive_dir.name}-{key}"
    if target.is_dir():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for stale in parent.glob(f".{target.name}.tmp-{host}-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            logger.info("removing the leftover of an interrupted unpack: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{target.name}.tmp-{host}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    logger.info("unpacking %d archives from %s into %s", len(archives), archive_dir, target)
    try:
        for archive in tqdm(archives, desc=f"unpacking {archive_dir.name}", unit="archive",
                            disable=not progress):
            _safe_extract(archive, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # pragma: no cover - unexpected filesystem error
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(directory: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in sorted(filenames)
                     if is_image_name(f))
    return found


def list_image_tree(
    directory: Path, class_names: Sequence[str] | None = None
) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of an ``<class>/<image>`` tree, sorted by class then path.

    Parameters
    ----------
    directory : Path
    class_names : sequence of str, optional
        Class order to use (e.g. the pool's, for the test split); by default the sorted
        sub-directory names. A sub-directory absent from it is an error.
    """
    dirs = [d for d in _class_dirs(directory)]
    names = list(class_names) if class_names is not None else [d.name for d in dirs]
    index = {c: i for i, c in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        if d.name not in index:
            raise DatasetFormatError(
                f"{d}: class {d.name!r} is not among the pool's classes {names}."
            )
        members = _images_under(d)
        files.extend(members)
        labels.extend([index[d.name]] * len(members))
    return files, np.asarray(labels, dtype=np.int64), names


def _decode(files: Sequence[Path], size: tuple[int, int] | None, mode: str, desc: str,
            progress: bool) -> np.ndarray:
    """Decode ``files`` to uint8 (n, C, H, W), resized to ``size`` (H, W) when given, else
    all of the first image's size; the first unreadable file is a DatasetFormatError."""
    if not files:
        h, w = size if size is not None else (1, 1)
        return np.empty((0, MODES[mode], h, w), dtype=np.uint8)
    resize = "stretch" if size is not None else None
    if size is None:
        try:
            size = decode_image(files[0], None, mode, draft=False).shape[:2]
        except Exception as err:
            raise DatasetFormatError(f"{files[0]}: cannot read the image ({err}).") from err
    images, _, failures = decode_files(files, size, mode, resize, draft=False,
                                       num_workers=DECODE_WORKERS, progress=progress, desc=desc)
    if failures:
        i, err = failures[0]
        if isinstance(err, ImageSizeError):
            raise DatasetFormatError(
                f"{files[i]}: {err}, the size of the first image; pass image_size=[H, W] to "
                f"resize all images to one size.")
        raise DatasetFormatError(f"{files[i]}: cannot read the image ({err}).") from err
    return images


def _decoded_cached(
    tree: Path, files: list[Path], size: tuple[int, int] | None, mode: str,
    cache_root: Path, label: str, progress: bool,
) -> np.ndarray:
    names = [f.relative_to(tree).as_posix() for f in files]
    key = decoded_images_key(names, *file_stats(files), {"size": size, "mode": mode},
                             length=16)
    path = Path(cache_root) / "decoded" / f"{tree.name}-{label}-{key}.npy"
    if path.exists():
        try:
            arr = np.load(path)
            if arr.dtype == np.uint8 and arr.ndim == 4 and len(arr) == len(files):
                logger.info("decoded images from cache %s", path)
                return arr
        except (OSError, ValueError):
            pass
        logger.warning("ignoring an unreadable decoded-image cache %s", path)
    arr = _decode(files, size, mode, desc=f"decoding {tree.name}/{label}", progress=progress)
    try:
        write_npy_atomic(path, arr)
    except OSError as err:  # a read-only cache is not fatal
        logger.warning("could not write the decoded-image cache %s: %s", path, err)
    return arr


def load_image_folder(
    root: Path,
    path: str | Path | None = None,
    image_size: int | Sequence[int] | None = None,
    mode: str = "RGB",
    pool_split: str = "train",
    test_split: str = "test",
    test_fraction: float = 0.3,
    split_seed: int = 0,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    *,
    name: str = "image_folder",
) -> Dataset:
    """Load an image-folder tree (or a directory of archives of one) as a :class:`Dataset`.

    Images are decoded by :func:`nfpf.data.images.decode_image` with a full decode (no
    reduced-scale JPEG draft) and cached; see the module docstring.

    Parameters
    ----------
    root : Path
        Data root; a relative ``path`` is resolved against it.
    path : str or Path
        The tree or archive directory (see the module docstring for the layouts).
    image_size : int or (H, W), optional
        Resize every image to this size (bilinear); by default all images must share the
        first image's size.
    mode : {"RGB", "L"}, default "RGB"
        Colour (3 channels) or grey (1 channel).
    pool_split, test_split : str, default "train", "test"
        Sub-directory names of the two splits, when the tree has them.
    test_fraction : float, default 0.3
        Test share of a seeded stratified split, used only when the tree has no splits.
    split_seed : int, default 0
        Seeds that split and the ``max_per_class`` subsampling.
    max_per_class : int, optional
        Keep at most this many random images per class in each split (quick runs).
    cache_dir : path, optional
        Cache root for unpacked archives and decoded arrays; ``$NFPF_CACHE_DIR`` or
        ``~/.cache/nfpf`` by default.
    progress : bool, default True
        Show tqdm progress bars while unpacking and decoding.

    Returns
    -------
    Dataset
        Images float32 (n, C, H, W) in [0, 1]; class names are the class directory names.
    """
    if path in (None, ""):
        raise ValueError(
            f"dataset {name!r} needs the option path=<image-folder tree or archive directory>,"
            f" absolute or relative to the data root (e.g. dataset.path=cifar10_jpg)."
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {mode!r}.")
    size = None if image_size is None else parse_image_size(image_size)
    location = require_path(name, path, root,
                            what="an image-folder tree or a directory of archives")
    if not location.is_dir():
        raise DatasetFormatError(f"{location}: expected a directory, found a file.")
    cache = Path(cache_dir).expanduser() if cache_dir else cache_root()

    tree = location
    has_splits = (tree / pool_split).is_dir() and (tree / test_split).is_dir()
    if not has_splits and not _class_dirs(tree) and _archives(tree):
        tree = unpack_archives(tree, cache, progress=progress)
    subdirs = _class_dirs(tree)
    if len(subdirs) == 1 and not (tree / pool_split).is_dir() and (
        (subdirs[0] / pool_split).is_dir()
    ):  # archives that unpack to a single top-level directory
        tree = subdirs[0]
    has_splits = (tree / pool_split).is_dir() and (tree / test_split).is_dir()

    if has_splits:
        pool_files, pool_y, classes = list_image_tree(tree / pool_split)
        test_files, test_y, _ = list_image_tree(tree / test_split, classes)
    else:
        files, labels, classes = list_image_tree(tree)
        if len(files):
            pool_idx, test_idx = stratified_split(labels, float(test_fraction), int(split_seed))
        else:
            pool_idx = test_idx = np.zeros(0, dtype=np.int64)
        pool_files, pool_y = [files[i] for i in pool_idx], labels[pool_idx]
        test_files, test_y = [files[i] for i in test_idx], labels[test_idx]
    if not pool_files or not test_files:
        raise DatasetFormatError(
            f"{tree}: found {len(pool_files)} pool and {len(test_files)} test images "
            f"({', '.join(IMAGE_EXTENSIONS)}); expected <{pool_split}|{test_split}>/<class>/"
            f"<image> or <class>/<image>."
        )

    arrays = []
    for offset, (label, files, y) in enumerate(
        (("pool", pool_files, pool_y), ("test", test_files, test_y))
    ):  # subsampled before decoding, so that unused files are never decoded
        keep = subsample_per_class(y, max_per_class, int(split_seed) + offset)
        files = [files[i] for i in keep]
        arrays.append((_decoded_cached(tree, files, size, mode, cache, label, progress), y[keep]))
    (pool_x, _), (test_x, _) = arrays
    if pool_x.shape[1:] != test_x.shape[1:]:
        raise DatasetFormatError(
            f"{tree}: pool images are {pool_x.shape[1:]} but test images {test_x.shape[1:]}; "
            f"pass image_size=[H, W]."
        )
    return uint8_dataset(name, arrays[0], arrays[1], classes)


@register_dataset("image_folder")
def load_image_folder_dataset(root: Path, **options) -> Dataset:
    """Any ImageFolder tree or archive directory; see :func:`load_image_folder`."""
    return load_image_folder(root, **options)


@register_dataset("cifar10_jpg")
def load_cifar10_jpg(
    root: Path,
    image_size: int | Sequence[int] | None = None,
    mode: str = "RGB",
    max_per_class: int | None = None,
    split_seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Dataset:
    """CIFAR-10 as JPEG archives in ``<root>/cifar10_jpg``: pool 50,000, test 10,000, (3, 32, 32).

    The 20 ``{train,test}_<class>.tar.gz`` archives are unpacked once into the cache (see
    :func:`load_image_folder` for the options).
    """
    return load_image_folder(
        root, "cifar10_jpg", image_size=image_size, mode=mode, max_per_class=max_per_class,
        split_seed=split_seed, cache_dir=cache_dir, progress=progress, name="cifar10_jpg",
    )
