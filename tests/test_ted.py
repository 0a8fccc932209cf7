"""TED: the low-rank sequential greedy against the literal deflation algorithm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nfpf.baselines.ted import TED, rbf_gamma, ted_kernel
from nfpf.core.selection import Pool


def _literal_ted(K: np.ndarray, budget: int, mu: float) -> np.ndarray:
    """Yu et al.'s sequential TED as written: brute-force argmax of the criterion over the
    unpicked samples, then deflate the full kernel matrix."""
    K = K.copy()
    picked: list[int] = []
    for _ in range(budget):
        score = (K * K).sum(axis=0) / (np.diag(K) + mu)
        score[picked] = -np.inf
        x = int(np.argmax(score))
        picked.append(x)
        K = K - np.outer(K[:, x], K[x, :]) / (K[x, x] + mu)
    return np.array(picked)


def _rbf(X: np.ndarray, gamma: float) -> np.ndarray:
    return np.exp(-gamma * cdist(X, X, "sqeuclidean"))


@pytest.mark.parametrize("budget", [1, 6, 40])  # 40 > 240 / 16 uses the K^2 path
def test_rbf_ted_equals_literal_algorithm(budget):
    X = np.random.default_rng(0).normal(size=(240, 5))
    got = TED(kernel="rbf", mu=1e-3, gamma=0.1).select(X, budget)
    np.testing.assert_array_equal(got, _literal_ted(_rbf(X, 0.1), budget, 1e-3))


@pytest.mark.parametrize("budget", [3, 8])
def test_linear_ted_equals_literal_algorithm(budget):
    X = np.random.default_rng(1).normal(size=(150, 8)) + 0.5
    got = TED(kernel="linear", mu=0.5).select(X, budget)
    np.testing.assert_array_equal(got, _literal_ted(X @ X.T, budget, 0.5))


def test_ted_kernel_on_an_explicit_matrix():
    X = np.random.default_rng(2).normal(size=(60, 3))
    K = _rbf(X, 0.5)
    for budget in (2, 30):
        np.testing.assert_array_equal(ted_kernel(K, budget, 0.01), _literal_ted(K, budget, 0.01))


def test_candidate_subset_is_seeded_and_equals_literal_on_the_subset():
    X = np.random.default_rng(3).normal(size=(500, 4))
    sel = TED(gamma=0.2, max_candidates=120)
    got = sel.select(X, 10, seed=5)
    cand = np.sort(np.random.default_rng(5).choice(500, 120, replace=False))  # the seeded draw
    assert sel.info_["candidate_subset"] and sel.info_["candidates"] == 120
    np.testing.assert_array_equal(got, cand[_literal_ted(_rbf(X[cand], 0.2), 10, 1e-3)])
    other = TED(gamma=0.2, max_candidates=120).select(X, 10, seed=6)
    assert not np.array_equal(got, other)  # another seed, another subset


def test_ted_prefers_central_points_over_outliers():
    rng = np.random.default_rng(4)
    blob = rng.normal(size=(200, 2))
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    outliers = 15.0 * np.c_[np.cos(angles), np.sin(angles)]  # isolated, far from the blob
    X = np.concatenate([blob, outliers])
    idx = TED().select(X, 5, seed=0)
    assert (idx < 200).all()
    # The first pick is central: nearer the blob's mean than most blob points.
    dist = np.linalg.norm(blob - blob.mean(axis=0), axis=1)
    assert np.linalg.norm(X[idx[0]] - blob.mean(axis=0)) < np.quantile(dist, 0.25)


@pytest.mark.parametrize("kernel,n,budget", [("rbf", 25, 25), ("linear", 30, 30),
                                             ("rbf", 300, 130)])
def test_ted_exactly_budget_distinct_including_b_equals_n(kernel, n, budget):
    X = np.random.default_rng(5).normal(size=(n, 3))
    idx = TED(kernel=kernel, max_candidates=100).select(X, budget, seed=0)
    assert idx.shape == (budget,) and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < n


def test_ted_deterministic_for_a_seed():
    X = np.random.default_rng(6).normal(size=(400, 3))
    a = TED(max_candidates=100).select(Pool(X), 12, seed=1)
    b = TED(max_candidates=100).select(Pool(X), 12, seed=1)
    np.testing.assert_array_equal(a, b)


def test_rbf_gamma_scale_heuristic():
    X = np.random.default_rng(7).normal(size=(50, 4)) * 3
    assert rbf_gamma(X) == pytest.approx(1.0 / (4 * X.var()))


def test_ted_bad_input():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="budget"):
        TED().select(X, 11)
    with pytest.raises(ValueError, match="mu"):
        TED(mu=0)
    with pytest.raises(ValueError, match="kernel"):
        TED(kernel="poly")
    with pytest.raises(ValueError, match="gamma"):
        TED(gamma=-1.0)
    with pytest.raises(ValueError, match="max_candidates"):
        TED(max_candidates=0)
