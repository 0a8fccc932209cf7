"""TypiClust and the shared kNN helpers, against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nfpf.baselines.neighbors import knn_density, knn_distances, l2_normalize
from nfpf.baselines.typiclust import TypiClust
from nfpf.core.selection import Pool


def _blobs(n_blobs: int, per_blob: int, dim: int = 5, spread: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=20.0, size=(n_blobs, dim))
    X = np.concatenate([c + rng.normal(scale=spread, size=(per_blob, dim)) for c in centres])
    return X, np.repeat(np.arange(n_blobs), per_blob)


def _brute_knn(X: np.ndarray, k: int) -> np.ndarray:
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)  # the point itself is not its own neighbour
    return np.sort(D, axis=1)[:, :k]


# --- shared kNN helper ----------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [None, 7, 64])
def test_knn_distances_equal_brute_force(chunk_size):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 6))
    X[20] = X[21]  # an exact duplicate is a neighbour at distance 0
    ref = _brute_knn(X, 9)
    got = knn_distances(X, 9, chunk_size=chunk_size)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got[20, 0] == pytest.approx(0.0, abs=1e-6)
    dist, idx = knn_distances(X, 9, chunk_size=chunk_size, return_indices=True)
    np.testing.assert_allclose(dist, ref, atol=1e-6)
    assert not (idx == np.arange(150)[:, None]).any()  # never itself
    np.testing.assert_allclose(cdist(X, X)[np.arange(150)[:, None], idx], ref, atol=1e-6)


def test_knn_density_is_inverse_mean_distance():
    X = np.random.default_rng(2).normal(size=(80, 4))
    ref = 1.0 / _brute_knn(X, 20).mean(axis=1)
    np.testing.assert_allclose(knn_density(X, 20), ref, rtol=1e-6)
    ref_sq = 1.0 / (_brute_knn(X, 20) ** 2).mean(axis=1)
    np.testing.assert_allclose(knn_density(X, 20, squared=True), ref_sq, rtol=1e-6)
    # float32 input is computed in float32: still close.
    np.testing.assert_allclose(knn_density(X.astype(np.float32), 20), ref, rtol=1e-4)


@pytest.mark.parametrize("k", [0, 10, 2.5])
def test_knn_rejects_k_larger_than_pool_or_invalid(k):
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="k"):
        knn_distances(X, k)


# --- TypiClust ------------------------------------------------------------------------------

def _reference_typiclust(X, labels, budget, k_nn=20, min_size=5, squared=True):
    """The released algorithm, written directly: static cycling order over usable clusters
    sorted by size (descending), brute-force typicality 1 / mean (squared) distance among the
    cluster's unselected points. Valid while no usable cluster runs out of samples."""
    ids, sizes = np.unique(labels, return_counts=True)
    keep = sizes > min_size
    ids, sizes = ids[keep], sizes[keep]
    order = ids[np.lexsort((ids, -sizes))]
    taken = np.zeros(len(X), dtype=bool)
    out = []
    for i in range(budget):
        members = np.flatnonzero((labels == order[i % len(order)]) & ~taken)
        k = min(k_nn, len(members) // 2)
        D = cdist(X[members], X[members], "sqeuclidean" if squared else "euclidean")
        np.fill_diagonal(D, np.inf)
        typicality = 1.0 / (np.sort(D, axis=1)[:, :k].mean(axis=1) + 1e-5)
        pick = members[np.argmax(typicality)]
        taken[pick] = True
        out.append(pick)
    return np.array(out)


def _unequal_blobs():
    # Unequal blob sizes, so the "largest cluster first" order matters.
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(loc=10 * i, scale=1.0, size=(30 + 7 * i, 3))
                           for i in range(6)])


@pytest.mark.parametrize("budget", [4, 12, 30])
def test_typiclust_defaults_equal_released_reference_given_its_clusters(budget):
    # Defaults: squared distances and L2-normalised features, as the released code. Budget
    # 30 > 12 clusters cycles.
    X = _unequal_blobs()
    sel = TypiClust(max_clusters=12)
    got = sel.select(X, budget, seed=0)
    unit = X / np.sqrt((X ** 2).sum(axis=1))[:, None]
    ref = _reference_typiclust(unit, sel.cluster_labels_, budget, squared=True)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("distance", ["squared", "euclidean"])
@pytest.mark.parametrize("normalize", [True, False])
def test_typiclust_each_option_equals_brute_force_reference(distance, normalize):
    X = _unequal_blobs()
    sel = TypiClust(max_clusters=12, distance=distance, normalize=normalize)
    got = sel.select(X, 12, seed=1)
    feats = X / np.linalg.norm(X, axis=1, keepdims=True) if normalize else X
    ref = _reference_typiclust(feats, sel.cluster_labels_, 12, squared=distance == "squared")
    np.testing.assert_array_equal(got, ref)
    if not normalize:  # the clusters are K-means of the raw features
        from sklearn.cluster import KMeans
        km = KMeans(n_clusters=12, n_init="auto", random_state=1).fit_predict(X)
        np.testing.assert_array_equal(sel.cluster_labels_, km)


def test_squared_and_euclidean_typicality_pick_differently():
    # One cluster of 40 Gaussian points on which the two typicalities disagree (seed 0): each
    # option must pick the brute-force argmax of its own formula.
    X = np.random.default_rng(0).normal(size=(40, 2))
    picks = {}
    for distance, metric in (("squared", "sqeuclidean"), ("euclidean", "euclidean")):
        D = cdist(X, X, metric)
        np.fill_diagonal(D, np.inf)
        expected = int(np.argmax(1.0 / np.sort(D, axis=1)[:, :20].mean(axis=1)))
        picks[distance] = TypiClust(normalize=False, distance=distance,
                                    max_clusters=1).select(X, 1, seed=0)[0]
        assert picks[distance] == expected
    assert picks["squared"] != picks["euclidean"]


@pytest.mark.parametrize("budget", [8, 20])
def test_typiclust_covers_every_separated_cluster(budget):
    X, blob = _blobs(8, 40)
    idx = TypiClust().select(X, budget, seed=0)
    assert set(blob[idx]) == set(range(8))


def test_typiclust_picks_the_densest_point_of_a_cluster():
    rng = np.random.default_rng(4)
    core = rng.normal(scale=0.1, size=(50, 2))
    halo = rng.normal(scale=3.0, size=(50, 2))
    X = np.concatenate([core, halo])
    idx = TypiClust(normalize=False).select(X, 1, seed=0)
    assert idx[0] < 50  # from the dense core, not the halo


@pytest.mark.parametrize("n,budget,max_clusters", [(60, 60, 500), (100, 40, 3), (40, 40, 500),
                                                     (57, 13, 500)])
def test_typiclust_exactly_budget_distinct(n, budget, max_clusters):
    X = np.random.default_rng(5).normal(size=(n, 4))
    sel = TypiClust(max_clusters=max_clusters)
    idx = sel.select(X, budget, seed=1)
    assert idx.shape == (budget,) and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < n


def test_typiclust_falls_back_to_small_clusters_when_usable_ones_are_exhausted():
    # 3 clusters of 10 (usable) + B = 40 over 40 samples: once the 30 usable samples are
    # taken, the picks continue in the small clusters.
    X, _ = _blobs(4, 10)
    sel = TypiClust(max_clusters=500)
    idx = sel.select(X, 40, seed=0)
    assert np.unique(idx).size == 40
    assert sel.info_["small_cluster_fallback_at"] is not None


def test_typiclust_deterministic_for_a_seed():
    X, _ = _blobs(5, 30)
    a = TypiClust().select(Pool(X), 10, seed=7)
    b = TypiClust().select(Pool(X), 10, seed=7)
    np.testing.assert_array_equal(a, b)


def test_typiclust_bad_input():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="budget"):
        TypiClust().select(X, 11)
    with pytest.raises(ValueError, match="k_neighbors"):
        TypiClust(k_neighbors=0)
    with pytest.raises(ValueError, match="max_clusters"):
        TypiClust(max_clusters=0)
    with pytest.raises(ValueError, match="n_init"):
        TypiClust(n_init=0)


def _big_and_small_blobs():
    """8 blobs of 40 samples and 3 of 3 samples, far apart; blob id per sample."""
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=50.0, size=(11, 4))
    sizes = [40] * 8 + [3] * 3
    X = np.concatenate([c + rng.normal(scale=0.5, size=(m, 4))
                        for c, m in zip(centres, sizes, strict=True)])
    return X, np.repeat(np.arange(11), sizes)


def test_small_cluster_rule_drops_clusters_with_a_recorded_warning(caplog):
    X, blob = _big_and_small_blobs()
    sel = TypiClust(normalize=False)
    with caplog.at_level("WARNING", logger="nfpf.baselines.typiclust"):
        idx = sel.select(X, 11, seed=0)
    # K = 11 clusters = the blobs; the 3 small ones get no pick, their 3 picks become second
    # picks of big blobs.
    assert set(blob[idx]) == set(range(8))
    assert np.bincount(blob[idx], minlength=11)[:8].max() == 2
    assert sel.info_["n_dropped_clusters"] == 3
    assert len(sel.info_["warnings"]) == 1 and "min_cluster_size=5" in sel.info_["warnings"][0]
    assert "min_cluster_size=5" in caplog.text


def test_min_cluster_size_zero_gives_every_cluster_a_pick():
    X, blob = _big_and_small_blobs()
    sel = TypiClust(normalize=False, min_cluster_size=0)
    idx = sel.select(X, 11, seed=0)
    np.testing.assert_array_equal(np.bincount(blob[idx], minlength=11), np.ones(11))
    assert sel.info_["n_dropped_clusters"] == 0 and sel.info_["warnings"] == []


def test_l2_normalize_leaves_an_all_zero_row_at_the_origin():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(l2_normalize(X), [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert l2_normalize(X.astype(np.float32)).dtype == np.float32


def test_typiclust_normalize_with_an_all_zero_row_follows_the_documented_rule():
    # normalize=True on a pool with an all-zero row: no NaN, the row stays at the origin,
    # i.e. the picks equal those on hand-normalised features with that row kept at 0.
    X, _ = _blobs(5, 20)
    X[7] = 0.0
    sel = TypiClust()
    got = sel.select(X, 6, seed=0)
    norms = np.sqrt((X ** 2).sum(axis=1))
    by_hand = np.divide(X, norms[:, None], out=np.zeros_like(X), where=norms[:, None] > 0)
    np.testing.assert_array_equal(got, TypiClust(normalize=False).select(by_hand, 6, seed=0))
    assert sel.info_["n_zero_rows"] == 1


def test_typiclust_rejects_bad_distance_and_normalize():
    with pytest.raises(ValueError, match="distance"):
        TypiClust(distance="cosine")
    with pytest.raises(ValueError, match="normalize"):
        TypiClust(normalize="yes")
