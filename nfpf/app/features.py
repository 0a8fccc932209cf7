"""The feature vectors the selector sees: fitted on a folder's pixels (and cached) or taken
from a feature file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfpf.app.options import Request, SelectError
from nfpf.app.sources import Source
from nfpf.features import FeatureSpace
from nfpf.io import config_hash, write_npy_atomic

__all__ = ["Features", "fit_features", "source_features"]

log = logging.getLogger(__name__)


@dataclass
class Features:
    """The selector's input.

    Attributes
    ----------
    X : ndarray of shape (n, d), float32
    pixels : ndarray of shape (n, C, H, W) in [0, 1], or None
        The images, when the selector uses them.
    shown : str
        The feature space's name in the outputs.
    cache : {"hit", "miss", "off"}
        The feature cache's state.
    notes : list of str
        Notes for the summary.
    """

    X: np.ndarray
    pixels: np.ndarray | None
    shown: str
    cache: str
    notes: list[str]


def fit_features(space: FeatureSpace, X: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """``space.fit_transform(X)`` as float32, with PCA's ``n_components`` lowered to
    min(n_samples, n_dims) when larger (noted in ``notes``)."""
    limit = min(X.shape)
    n_components = getattr(space, "n_components", None)
    if isinstance(n_components, int) and n_components > limit:
        log.warning("features: %s n_components=%d exceeds min(n_samples, n_dims)=%d; using %d",
                    name, n_components, limit, limit)
        notes.append(f"{name} n_components lowered from {n_components} to {limit} "
                     f"(min of samples and dimensions)")
        space.n_components = limit
    log.info("features: fitting %s on %d x %d", name, X.shape[0], X.shape[1])
    try:
        return np.asarray(space.fit_transform(X), dtype=np.float32)
    except ValueError as err:
        raise SelectError(f"features {name}: {err}") from None


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        X = np.load(path)
    except (OSError, ValueError):
        return None
    return X if X.ndim == 2 and len(X) == n else None


def _image_features(request: Request, source: Source) -> Features:
    images = source.images
    flat = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    pixels = flat.reshape(images.shape) if getattr(request.selector, "uses_images", False) \
        else None
    notes: list[str] = []
    path = None
    if source.cache_key is not None:
        path = (request.cache_dir / "features"
                / f"{source.cache_key}-{config_hash(request.features_config)}.npy")
        X = _load_cached(path, len(flat))
        if X is not None:
            log.info("features: cache hit (%s)", path.name)
            return Features(X, pixels, request.features_name, "hit", notes)
    X = fit_features(request.space, flat, request.features_name, notes)
    if path is not None:
        try:
            write_npy_atomic(path, X)
        except OSError as err:
            log.warning("could not write the feature cache %s: %s", path, err)
    return Features(X, pixels, request.features_name, "off" if path is None else "miss", notes)


def source_features(request: Request, source: Source) -> Features:
    """Features of a folder's images (``request.space`` on the flattened [0, 1] pixels), or a
    feature file's vectors (passed through ``request.space`` with ``transform_features``)."""
    if source.images is not None:
        return _image_features(request, source)
    if request.transform_features:
        notes: list[str] = []
        X = fit_features(request.space, source.features, request.features_name, notes)
        return Features(X, None, request.features_name, "off", notes)
    return Features(source.features, None, "the file's", "off", [])
