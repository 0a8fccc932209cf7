"""Feature spaces: from a dataset's pixels to the n × d arrays selectors and classifiers use.

Each feature space is a small estimator with ``fit_transform(pool)`` and ``transform(test)``
on images in [0, 1], shaped (n, *image_shape) (flat (n, D) arrays are accepted too by the
pixel-based spaces); :func:`compute_features` fits it on the pool only (the test split never
influences the features) and caches both outputs on disk by a key of the dataset and feature
configs. Learned spaces (SimCLR, pretrained backbones) follow the same two methods.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA as _SkPCA
from sklearn.preprocessing import StandardScaler

from nfpf.core.selection import check_whole
from nfpf.io import write_npy_atomic

__all__ = ["PCA", "FeatureSpace", "Raw", "Standardize", "compute_features"]

log = logging.getLogger(__name__)


class FeatureSpace:
    """Base: identity on [-1, 1]-scaled pixels; subclasses add a fitted transform."""

    def fit_transform(self, pool: np.ndarray) -> np.ndarray:
        """Fit on the pool's [0, 1] images (n, *image_shape) and return (n, d) features."""
        return self.transform(pool)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map [0, 1] images (m, *image_shape) to (m, d) features with the fitted transform."""
        x = np.asarray(x, dtype=np.float32)
        return (x.reshape(len(x), -1) * 2.0 - 1.0).astype(np.float32)


class Raw(FeatureSpace):
    """Flattened pixels scaled to [-1, 1] (vector datasets: their [0, 1]-scaled values)."""


class Standardize(FeatureSpace):
    """Each dimension centred and scaled to unit variance over the pool (constant ones: 0)."""

    def fit_transform(self, pool: np.ndarray) -> np.ndarray:
        self.scaler_ = StandardScaler().fit(super().transform(pool))
        return self.transform(pool)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(super().transform(x)).astype(np.float32)


class PCA(FeatureSpace):
    """The top ``n_components`` principal components of the pool's [-1, 1] pixels.

    Parameters
    ----------
    n_components : int
        Number of components; at most min(n_pool, n_dims).
    whiten : bool
        Scale components to unit variance.
    seed : int
        Seed of the randomized SVD solver (used on large inputs).
    """

    def __init__(self, n_components: int = 50, whiten: bool = False, seed: int = 0):
        # named as the config writes it, like the pool-size check of fit
        self.n_components = check_whole("features.n_components", n_components, low=1)
        self.whiten = bool(whiten)
        self.seed = int(seed)

    def fit_transform(self, pool: np.ndarray) -> np.ndarray:
        x = super().transform(pool)
        limit = min(x.shape)
        if self.n_components > limit:
            raise ValueError(
                f"PCA n_components={self.n_components} exceeds min(n_samples, n_features)="
                f"{limit} of this pool; choose features.n_components <= {limit}."
            )
        self.pca_ = _SkPCA(self.n_components, whiten=self.whiten, random_state=self.seed)
        return self.pca_.fit_transform(x).astype(np.float32)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.pca_.transform(super().transform(x)).astype(np.float32)


def compute_features(
    space: FeatureSpace,
    pool: np.ndarray,
    test: np.ndarray,
    cache_dir: str | Path | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``space`` on ``pool`` and transform both splits, cached under ``cache_dir/key``.

    Parameters
    ----------
    space : FeatureSpace
    pool : ndarray of shape (n, *image_shape), [0, 1] pixels
    test : ndarray of shape (m, *image_shape)
    cache_dir, key : where to cache; no caching when either is None.

    Returns
    -------
    (pool_features (n, d), test_features (m, d)), float32.
    """
    if cache_dir is not None and key is not None:
        pool_path = Path(cache_dir) / "features" / f"{key}.pool.npy"
        test_path = pool_path.with_name(f"{key}.test.npy")
        if pool_path.is_file() and test_path.is_file():
            log.info("features: loaded from cache %s", pool_path.name)
            return np.load(pool_path), np.load(test_path)
    pool_features = space.fit_transform(pool)
    test_features = space.transform(test)
    if cache_dir is not None and key is not None:
        write_npy_atomic(test_path, test_features)
        write_npy_atomic(pool_path, pool_features)
    return pool_features, test_features
