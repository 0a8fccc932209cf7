"""random, kmeans and coreset against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

from nfpf.baselines.coreset import Coreset
from nfpf.baselines.simple import KMeans, Random
from nfpf.core.kernels import nearest_distinct_exact as nearest_distinct


def brute_force_k_center(X: np.ndarray, first: int, budget: int) -> list[int]:
    """O(n^2) greedy k-center from the full distance matrix."""
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    while len(chosen) < budget:
        chosen.append(int(np.argmax(D[:, chosen].min(axis=1))))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coreset_equals_brute_force(seed):
    X = np.random.default_rng(seed).normal(size=(300, 6)).astype(np.float32)
    selector = Coreset(chunk_size=37)  # several chunks, last one partial
    picked = selector.select(X, 25, seed=seed)
    assert picked.tolist() == brute_force_k_center(X.astype(np.float64), int(picked[0]), 25)


def test_coreset_mean_init_starts_nearest_the_mean():
    X = np.random.default_rng(3).normal(size=(200, 4))
    picked = Coreset(init="mean").select(X, 5)
    assert picked[0] == np.argmin(((X - X.mean(0)) ** 2).sum(1))


def test_coreset_picks_far_outliers_first():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(scale=0.1, size=(200, 2)), [[50, 50], [-50, 40], [40, -60]]])
    picked = Coreset(init="mean").select(X, 4)
    assert set(picked[1:4]) == {200, 201, 202}


def test_coreset_with_duplicates_returns_distinct():
    X = np.repeat(np.random.default_rng(0).normal(size=(5, 3)), 4, axis=0)
    picked = Coreset().select(X, 20)
    assert np.unique(picked).size == 20


def test_kmeans_picks_are_nearest_to_fitted_centroids():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    picked = KMeans(n_init=2).select(X, 12, seed=7)
    km = SkKMeans(n_clusters=12, n_init=2, max_iter=300, random_state=7).fit(X)
    d = ((X[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1)
    assert picked.tolist() == d.argmin(axis=0).tolist()


def test_nearest_distinct_resolves_collisions():
    X = np.array([[0.0], [0.1], [5.0]])
    centers = np.array([[0.0], [0.01], [5.0]])  # two centres share nearest sample 0
    assert nearest_distinct(X, centers).tolist() == [0, 1, 2]


def test_random_no_repeats_and_respects_seed():
    X = np.zeros((1000, 2))
    a = Random().select(X, 500, seed=1)
    assert np.unique(a).size == 500
    assert np.array_equal(a, Random().select(X, 500, seed=1))
    assert not np.array_equal(a, Random().select(X, 500, seed=2))


@pytest.mark.parametrize("selector", [Random(), KMeans(), Coreset()], ids=repr)
@pytest.mark.parametrize("budget", [1, 7, 40])
def test_exactly_budget_distinct_in_range(selector, budget):
    X = np.random.default_rng(0).normal(size=(40, 3))
    picked = selector.select(X, budget, seed=0)
    assert picked.shape == (budget,) and np.unique(picked).size == budget
    assert picked.min() >= 0 and picked.max() < 40


@pytest.mark.parametrize("budget,match", [(0, "at least 1"), (-3, "at least 1"),
                                          (41, "larger than the pool"), (2.5, "whole number")])
def test_bad_budget(budget, match):
    with pytest.raises(ValueError, match=match):
        Random().select(np.zeros((40, 2)), budget)


def test_nan_features_rejected():
    X = np.zeros((10, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        Coreset().select(X, 2)


@pytest.mark.parametrize("kwargs", [{"init": "center"}, {"chunk_size": 0}])
def test_coreset_bad_params(kwargs):
    with pytest.raises(ValueError):
        Coreset(**kwargs)
