"""The one image decoder: which files are images, how one is decoded, and the cache key.

Both ``nfpf-select`` (:mod:`nfpf.app.folder`) and the image-folder datasets
(:mod:`nfpf.data.image_folder`) read images through this module, so the same file gives the
same pixels in both. The rules (documented in ``docs/select.md`` and ``docs/datasets.md``):

- **Which files.** A file is an image when its name ends with one of
  :data:`IMAGE_EXTENSIONS` (case-insensitive) and does not start with "." (hidden).
- **Decoding.** Pillow, the first frame of animated or multi-page files, then the EXIF
  orientation is applied.
- **Colour** (:func:`to_mode`). 16-bit grey keeps its high byte (``v >> 8``, as Pillow does
  for 16-bit colour PNGs); 32-bit integer and float images are min-max scaled per image;
  images with transparency (an alpha band, or a palette or colour key with a transparent
  entry) are composited onto white; then converted to ``mode`` ("RGB" or "L").
- **Size.** Resized to (height, width) with Pillow's antialiased bilinear filter by one of
  :data:`RESIZE_POLICIES`; with ``draft``, a JPEG at least twice the target is first
  decoded at a reduced DCT scale (faster, never below the target).
- **Cache key** (:func:`decoded_images_key`): the decoder version, the options, the file
  names, sizes and modification times, so any change to a file or a rule reads it again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nfpf.core.selection import check_whole
from nfpf.io import hash_bytes

__all__ = [
    "DECODER_VERSION",
    "IMAGE_EXTENSIONS",
    "MODES",
    "RESIZE_POLICIES",
    "ImageSizeError",
    "decode_files",
    "decode_image",
    "decoded_images_key",
    "file_stats",
    "is_image_name",
    "load_image",
    "parse_image_size",
    "to_mode",
]

log = logging.getLogger(__name__)

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm",
                    ".tif", ".tiff", ".webp")
#: Colour modes and their number of channels.
MODES = {"RGB": 3, "L": 1}
#: How an image is brought to the target size: the whole image with its aspect ratio not
#: kept, the centre after scaling the shorter side, or the whole image padded with black.
RESIZE_POLICIES = ("stretch", "center_crop", "pad")
#: Part of every cache key; raise it when a rule of this module changes the pixels.
DECODER_VERSION = 2


class ImageSizeError(ValueError):
    """An image is not of the size required when resizing is off."""


def is_image_name(name: str) -> bool:
    """Whether a file called ``name`` is read as an image (extension, not hidden)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``32`` or ``[h, w]`` -> (h, w); a one-line ValueError naming ``image_size`` otherwise."""
    if isinstance(image_size, str) or not hasattr(image_size, "__len__"):
        side = check_whole("image_size", image_size, low=1,
                           hint=" (a square side, e.g. image_size=32) or [height, width]")
        return side, side
    if len(image_size) != 2:
        raise ValueError(f"image_size must be one side (e.g. image_size=32) or [height, width] "
                         f"(e.g. image_size=[32,48]); got {image_size!r}.")
    height, width = (check_whole(f"image_size[{i}]", side, low=1)
                     for i, side in enumerate(image_size))
    return height, width


def to_mode(im, mode: str):
    """Convert a loaded PIL image to ``mode`` by the colour rules of the module docstring."""
    from PIL import Image

    if im.mode.startswith("I;16"):
        grey = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
        im = Image.fromarray(grey, mode="L")
    elif im.mode in ("I", "F"):
        values = np.asarray(im, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0.0
        im = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    if "A" in im.getbands() or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im if im.mode == mode else im.convert(mode)


def load_image(path: str | os.PathLike, mode: str = "RGB",
               draft_size: tuple[int, int] | None = None):
    """Open and decode one image file as a PIL image in ``mode``, upright by its EXIF.

    Parameters
    ----------
    path : image file (opened read-only)
    mode : {"RGB", "L"}
    draft_size : (width, height), optional
        Let a JPEG at least twice this size decode at a reduced DCT scale, never below it.

    Raises
    ------
    Exception
        Whatever Pillow raises for an unreadable file.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if (draft_size is not None and im.format == "JPEG"
                and im.width >= 2 * draft_size[0] and im.height >= 2 * draft_size[1]):
            im.draft(None, draft_size)
        im.load()  # raises here on truncated or corrupt data
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block does not make the pixels unusable
            pass
        return to_mode(im, mode)


def decode_image(path: str | os.PathLike, size: tuple[int, int] | None = None,
                 mode: str = "RGB", resize: str | None = "stretch", *,
                 draft: bool = True) -> np.ndarray:
    """Decode one image file to uint8 pixels of shape (height, width, channels).

    Parameters
    ----------
    path : image file (opened read-only)
    size : (height, width), optional
        The output size; None keeps the image's own.
    mode : {"RGB", "L"}
    resize : {"stretch", "center_crop", "pad"} or None
        How an image of another size is brought to ``size``; None: it is an error
        (:class:`ImageSizeError`).
    draft : bool, default True
        Decode large JPEGs at a reduced DCT scale first (faster; slightly different pixels
        from a full decode followed by the resize).

    Raises
    ------
    Exception
        Whatever Pillow raises for an unreadable file; ImageSizeError (see ``resize``).
    """
    from PIL import Image, ImageOps

    side = None if size is None or not draft else (max(size),) * 2
    im = load_image(path, mode, side)
    h, w = (im.height, im.width) if size is None else size
    if im.size != (w, h):
        if resize is None:
            raise ImageSizeError(f"the image is {im.width}x{im.height} (W x H), not {w}x{h}")
        if resize == "stretch":
            im = im.resize((w, h), Image.BILINEAR)
        elif resize == "center_crop":
            im = ImageOps.fit(im, (w, h), method=Image.BILINEAR)
        else:
            im = ImageOps.pad(im, (w, h), method=Image.BILINEAR, color=0)
    return np.asarray(im, dtype=np.uint8).reshape(h, w, MODES[mode])


def decode_files(
    paths: Sequence[str | os.PathLike],
    size: tuple[int, int],
    mode: str = "RGB",
    resize: str | None = "stretch",
    *,
    draft: bool = True,
    num_workers: int = 4,
    chunk_size: int = 512,
    progress: bool = True,
    desc: str = "reading images",
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, Exception]]]:
    """Decode many files with :func:`decode_image` in threads, streamed in chunks.

    Parameters
    ----------
    paths : sequence of n image files
    size, mode, resize, draft : see :func:`decode_image`
    num_workers : int
        Decoding threads (Pillow releases the GIL while decoding); 0 or 1: in this thread.
    chunk_size : int
        Files decoded per chunk (bounds the memory of pending results).
    progress : bool
        Show a tqdm progress bar labelled ``desc``.

    Returns
    -------
    images : ndarray of shape (m, channels, height, width), uint8
        The readable images, in the order of ``paths``.
    usable : ndarray of shape (m,), int64
        Their indices into ``paths``.
    failures : list of (index, exception)
        The files that could not be decoded, with what was raised.

    Notes
    -----
    Time O(total decoded pixels); memory n·h·w·channels bytes for the output plus one chunk
    of decoded images.
    """
    h, w = size
    n = len(paths)
    out = np.empty((n, h, w, MODES[mode]), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    failures: list[tuple[int, Exception]] = []

    def work(i: int) -> tuple[int, np.ndarray | Exception]:
        try:
            return i, decode_image(paths[i], size, mode, resize, draft=draft)
        except Exception as err:  # one unreadable file is reported, not fatal here
            return i, err

    executor = ThreadPoolExecutor(num_workers) if num_workers > 1 else None
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, mininterval=0.5)
    try:
        for start in range(0, n, chunk_size):
            chunk = range(start, min(start + chunk_size, n))
            for i, result in (executor.map(work, chunk) if executor else map(work, chunk)):
                if isinstance(result, Exception):
                    failures.append((i, result))
                else:
                    out[i] = result
                    ok[i] = True
                bar.update(1)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    usable = np.flatnonzero(ok).astype(np.int64)
    return np.ascontiguousarray(out[usable].transpose(0, 3, 1, 2)), usable, failures


def decoded_images_key(names: Sequence[str], sizes: np.ndarray, mtimes_ns: np.ndarray,
                       options: Mapping[str, Any], length: int = 24) -> str:
    """Cache key of decoded images: :data:`DECODER_VERSION`, the decoding ``options`` (size,
    mode, ...), and each file's name, size in bytes and modification time in nanoseconds."""
    head = json.dumps({"decoder": DECODER_VERSION, "n": len(names), **options},
                      sort_keys=True)
    listing = b"".join(name.encode("utf-8", "surrogateescape") + b"\0" for name in names)
    return hash_bytes(head.encode(), listing,
                      np.asarray(sizes, dtype=np.int64).tobytes(),
                      np.asarray(mtimes_ns, dtype=np.int64).tobytes(), length=length)


def file_stats(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Sizes in bytes and modification times in nanoseconds of ``paths`` (int64 arrays)."""
    stats = [Path(p).stat() for p in paths]
    return (np.asarray([s.st_size for s in stats], dtype=np.int64),
            np.asarray([s.st_mtime_ns for s in stats], dtype=np.int64))
