"""USL: density and regulariser against brute force; the whole selection against a reference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nfpf.baselines.neighbors import knn_density, knn_distances
from nfpf.baselines.usl import USL, usl_regularizer
from nfpf.core.selection import Pool


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _blobs(n_blobs: int, per_blob: int, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim)) * 5
    X = np.concatenate([c + rng.normal(scale=0.3, size=(per_blob, dim)) for c in centres])
    return X, np.repeat(np.arange(n_blobs), per_blob)


def _brute_density(X: np.ndarray, k: int) -> np.ndarray:
    D2 = cdist(X, X, "sqeuclidean")
    np.fill_diagonal(D2, np.inf)
    return 1.0 / np.sort(D2, axis=1)[:, :k].mean(axis=1)


def _brute_regularizer(X, selected, labels, alpha, horizon):
    out = np.zeros(len(X))
    for j in selected:  # loop over picks, each term written out
        d2 = ((X - X[j]) ** 2).sum(axis=1)
        use = (labels != labels[j]) & (d2 < horizon)
        out[use] += 1.0 / d2[use] ** alpha
    return out


def _reference_usl(X, labels, k, iters=10, w=0.5, momentum=0.9, alpha=0.5, horizon=4.0):
    """The released get_selection_with_reg, written directly (ignored pairs contribute 0)."""
    density = _brute_density(X, k)
    reg = np.zeros(len(X))
    for _ in range(iters):
        selected = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            selected.append(members[np.argmax(density[members] - w * reg[members])])
        new = _brute_regularizer(X, np.array(selected), labels, alpha, horizon)
        reg = momentum * reg + (1 - momentum) * new
    return np.array(selected)


def test_usl_density_equals_brute_force():
    X = _unit(np.random.default_rng(0).normal(size=(120, 6)))
    np.testing.assert_allclose(knn_density(X, 15, squared=True, chunk_size=17),
                               _brute_density(X, 15), rtol=1e-6)


@pytest.mark.parametrize("horizon", [4.0, 0.8, None])
def test_usl_regularizer_equals_brute_force(horizon):
    rng = np.random.default_rng(1)
    X = _unit(rng.normal(size=(200, 4)))
    labels = rng.integers(0, 7, size=200)
    selected = rng.choice(200, size=7, replace=False)
    got = usl_regularizer(X, selected, labels, alpha=0.5, horizon_dist=horizon, chunk_size=31)
    ref = _brute_regularizer(X, selected, labels, 0.5, np.inf if horizon is None else horizon)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


@pytest.mark.parametrize("budget", [5, 12, 25])
def test_usl_equals_reference_given_its_clusters(budget):
    X = np.random.default_rng(2).normal(size=(300, 5))
    sel = USL(k=20)
    got = sel.select(X, budget, seed=0)
    ref = _reference_usl(_unit(X), sel.cluster_labels_, k=20)
    np.testing.assert_array_equal(got, ref)
    assert len(sel.history_) == 9


def test_regularisation_changes_the_selection():
    # Without the regulariser each cluster gives its densest sample; with a strong one the
    # picks move away from each other (checked against the reference above).
    X = np.random.default_rng(3).normal(size=(300, 2))
    plain = USL(k=20, n_iters=1).select(X, 8, seed=0)
    strong = USL(k=20, w=50.0).select(X, 8, seed=0)
    assert set(plain) != set(strong)


@pytest.mark.parametrize("budget", [6, 14])
def test_usl_covers_every_separated_cluster(budget):
    X, blob = _blobs(6, 40)
    idx = USL(k=30).select(X, budget, seed=0)
    assert set(blob[idx]) == set(range(6))


@pytest.mark.parametrize("n,budget", [(30, 30), (50, 17), (40, 1)])
def test_usl_exactly_budget_distinct_including_b_equals_n(n, budget):
    X = np.random.default_rng(4).normal(size=(n, 3))
    idx = USL(k=10).select(X, budget, seed=0)
    assert idx.shape == (budget,) and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < n


def test_usl_caps_k_at_pool_size_with_a_warning(caplog):
    X = np.random.default_rng(5).normal(size=(40, 3))
    sel = USL()  # k = 400 (paper) on a 40-sample pool
    with caplog.at_level(logging.WARNING, logger="nfpf.baselines.usl"):
        idx = sel.select(X, 4, seed=0)
    assert sel.info_["k"] == 39
    assert "k=400" in caplog.text
    assert np.unique(idx).size == 4


def test_usl_deterministic_for_a_seed():
    X, _ = _blobs(4, 30)
    a = USL(k=10).select(Pool(X), 6, seed=3)
    b = USL(k=10).select(Pool(X), 6, seed=3)
    np.testing.assert_array_equal(a, b)


def test_memory_reuses_the_density_across_budgets_and_seeds(tmp_path):
    X, _ = _blobs(4, 30)
    runs = [(6, 3), (12, 3), (6, 4)]  # the density depends on neither budget nor seed
    for i, (budget, seed) in enumerate(runs):
        expected = USL(k=10).select(Pool(X), budget, seed=seed)
        sel = USL(k=10, memory=str(tmp_path))
        np.testing.assert_array_equal(sel.select(Pool(X), budget, seed=seed), expected)
        assert sel.info_["memory_hits"] == ([] if i == 0 else ["knn_density"])
    other = USL(k=12, memory=str(tmp_path))  # another k: another density
    other.select(Pool(X), 6, seed=3)
    assert other.info_["memory_hits"] == []


def test_usl_bad_input():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="budget"):
        USL().select(X, 11)
    with pytest.raises(ValueError, match="k=11 is larger than the pool"):
        knn_distances(X, 11)  # k larger than the pool, in the shared helper
    for bad in ({"k": 0}, {"momentum": 1.0}, {"alpha": 0.0}, {"horizon_dist": 0},
                {"n_iters": 0}, {"w": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            USL(**bad)


# --- documented choices: horizon boundary, lowest-index ties, normalisation ------------------

def test_a_pick_at_exactly_the_horizon_does_not_count():
    # Released rule: squared distances >= horizon are ignored. Integer points: exact squares.
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    labels = np.array([0, 1, 2])
    got = usl_regularizer(X, np.array([1]), labels, alpha=0.5, horizon_dist=4.0)
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0])  # d² = 4 (ignored), 0 (same), 1


def test_equal_scores_in_a_cluster_go_to_the_lowest_index():
    # Two clusters of two points each; within a pair both points have the same density
    # (each other's only neighbour, integer coordinates: exact), so each cluster's pick is its
    # lower index. One round: no regulariser.
    X = np.array([[100.0, 0.0], [0.0, 0.0], [101.0, 0.0], [1.0, 0.0]])
    got = USL(k=1, n_iters=1, normalize=False).select(X, 2, seed=0)
    assert sorted(got.tolist()) == [0, 1]


def test_normalize_equals_hand_normalised_features_and_keeps_zero_rows_at_the_origin():
    X, _ = _blobs(4, 15)
    X[3] = 0.0
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    by_hand = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    got = USL(k=10).select(X, 6, seed=0)
    assert np.isfinite(X[got]).all()
    np.testing.assert_array_equal(got, USL(k=10, normalize=False).select(by_hand, 6, seed=0))
