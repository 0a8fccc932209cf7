"""The torch kernels of the GPU paths, run on the CPU, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from nfpf.core import kernels
from nfpf.core.kernels import nearest_distinct_exact as cpu_nearest_distinct


def blobs(n: int = 1500, d: int = 6, k: int = 8, seed: int = 0) -> np.ndarray:
    X, _ = make_blobs(n, d, centers=k, cluster_std=1.5, random_state=seed)
    return X.astype(np.float32)


# ----------------------------------------------------------------------------- kNN
@pytest.mark.parametrize("chunk_size", [None, 64, 97])
def test_knn_matches_sklearn_nearest_neighbors(chunk_size):
    X = np.random.default_rng(0).normal(size=(700, 9)).astype(np.float32)
    dist, idx = kernels.knn(X, 6, chunk_size=chunk_size)
    ref_d, ref_i = NearestNeighbors(n_neighbors=6).fit(X.astype(np.float64)).kneighbors()
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-4, atol=1e-4)
    # the indices agree wherever the reference distances are not near-ties
    gaps = np.diff(np.c_[np.zeros(len(X)), ref_d], axis=1) > 1e-3
    assert gaps.mean() > 0.95
    assert (idx.numpy() == ref_i)[gaps].all()


def test_knn_excludes_self_by_index_and_keeps_duplicates():
    base = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    X = np.vstack([base, base[:10]])  # rows 50..59 duplicate rows 0..9
    dist, idx = kernels.knn(X, 2, squared=True, chunk_size=16)
    rows = np.arange(len(X))
    assert not (idx.numpy() == rows[:, None]).any()
    assert np.allclose(dist.numpy()[:10, 0], 0.0, atol=1e-5)
    assert idx.numpy()[:10, 0].tolist() == list(range(50, 60))
    brute = cdist(X, X, "sqeuclidean")
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(dist.numpy(), np.sort(brute, axis=1)[:, :2], atol=1e-4)


@pytest.mark.parametrize("k", [0, 50, 2.5, True])
def test_knn_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        kernels.knn(np.zeros((50, 2), dtype=np.float32), k)


# ------------------------------------------------------------------------ distances
def test_center_distances_match_cdist():
    rng = np.random.default_rng(2)
    X, C = rng.normal(size=(301, 7)), rng.normal(size=(13, 7))
    got = kernels.center_distances(X, C, batch_size=50)
    np.testing.assert_allclose(got.numpy(), cdist(X, C), rtol=1e-5, atol=1e-5)
    got_sq = kernels.center_distances(torch.from_numpy(X), C, squared=True)
    np.testing.assert_allclose(got_sq.numpy(), cdist(X, C, "sqeuclidean"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch_size", [None, 100, 333])
def test_nearest_distinct_matches_cpu_reference(batch_size):
    X = blobs(1000)
    C = X[::83] + 0.05
    got = kernels.nearest_distinct(X, C, batch_size=batch_size)
    assert got.tolist() == cpu_nearest_distinct(X, C).tolist()


def test_nearest_distinct_resolves_collisions_like_cpu_reference():
    rng = np.random.default_rng(3)
    X = np.repeat(rng.normal(size=(30, 4)), 3, axis=0).astype(np.float32)  # triplicates
    C = X[rng.choice(len(X), 40, replace=False)] + 0.01
    got = kernels.nearest_distinct(X, C, batch_size=17)
    assert np.unique(got).size == 40
    assert got.tolist() == cpu_nearest_distinct(X, C).tolist()


# -------------------------------------------------------------------------- k-means++
def brute_kmeans_plusplus(X: np.ndarray, n_clusters: int, seed: int) -> list[int]:
    """Greedy k-means++ in float64 numpy from the full distance matrix, same draws."""
    rng = np.random.RandomState(seed)
    D = cdist(X, X, "sqeuclidean")
    n_trials = 2 + int(np.log(n_clusters))
    chosen = [int(rng.choice(len(X), p=np.full(len(X), 1 / len(X))))]
    closest = D[chosen[0]]
    for _ in range(1, n_clusters):
        targets = rng.uniform(size=n_trials) * closest.sum()
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), targets), len(X) - 1)
        pots = np.minimum(D[candidates], closest).sum(axis=1)
        best = int(np.argmin(pots))
        closest = np.minimum(D[candidates[best]], closest)
        chosen.append(int(candidates[best]))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_plusplus_matches_brute_force(seed):
    X = blobs(400, seed=seed)
    got = kernels.kmeans_plusplus(X, 9, seed=seed)
    assert got.tolist() == brute_kmeans_plusplus(X.astype(np.float64), 9, seed)
    # the draws are scikit-learn's: its k-means++ picks the same samples
    from sklearn.cluster import kmeans_plusplus

    assert got.tolist() == kmeans_plusplus(X, 9, random_state=seed)[1].tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_kmeans_reproduces_sklearn_kmeans_with_its_seed(seed):
    """Same seed, same k-means++ draws, same Lloyd: scikit-learn's clustering.

    What is promised is the partition, its centres and its inertia, not the cluster
    numbering: restarts that reach one partition with inertias equal to rounding may be kept
    in either order (seed 1 does, with scikit-learn 1.9), and each numbers it its own way.
    """
    X = blobs(1500, seed=seed)
    sk = SkKMeans(8, n_init=3, random_state=seed).fit(X)
    got = kernels.kmeans(X, 8, n_init=3, seed=seed)
    ours, theirs = got.labels.numpy(), sk.labels_
    # the same partition: each of our clusters is exactly one of theirs
    pairs = np.unique(np.c_[ours, theirs], axis=0)
    assert len(pairs) == 8 and len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1])) == 8
    relabel = dict(pairs.tolist())
    np.testing.assert_allclose(got.centers.numpy(),
                               sk.cluster_centers_[[relabel[c] for c in range(8)]], atol=1e-4)
    assert got.inertia == pytest.approx(sk.inertia_, rel=1e-5)


def test_kmeans_partition_check_detects_another_partition():
    """The relabelling check above fails when one sample moves to another cluster."""
    labels = np.repeat(np.arange(8), 10)
    moved = labels.copy()
    moved[0] = 1
    assert len(np.unique(np.c_[labels, moved], axis=0)) > 8
    assert len(np.unique(np.c_[labels, (labels + 3) % 8], axis=0)) == 8


def test_kmeans_plusplus_properties():
    X, y = make_blobs(600, 4, centers=10, cluster_std=0.1, center_box=(-100, 100),
                      random_state=4)
    picks = kernels.kmeans_plusplus(X, 10, seed=5)
    assert sorted(y[picks].tolist()) == list(range(10))  # one per far-apart blob
    # the first one is uniform, drawn as scikit-learn draws it
    assert picks[0] == np.random.RandomState(5).choice(600, p=np.full(600, 1 / 600))
    everything = kernels.kmeans_plusplus(X[:40], 40, seed=0)
    assert sorted(everything.tolist()) == list(range(40))  # K = n: every sample once
    assert np.array_equal(picks, kernels.kmeans_plusplus(X, 10, seed=5))
    assert not np.array_equal(picks, kernels.kmeans_plusplus(X, 10, seed=6))


# ---------------------------------------------------------------------------- k-means
@pytest.mark.parametrize("seed", [0, 1])
def test_kmeans_from_given_centres_matches_sklearn(seed):
    X = blobs(2000, seed=seed)
    init = X[np.random.default_rng(seed).choice(len(X), 8, replace=False)]
    sk = SkKMeans(8, init=init, n_init=1, max_iter=300, tol=1e-4).fit(X)
    got = kernels.kmeans(X, 8, init=init, batch_size=300)
    assert got.labels.numpy().tolist() == sk.labels_.tolist()
    np.testing.assert_allclose(got.centers.numpy(), sk.cluster_centers_, atol=1e-4)
    assert got.inertia == pytest.approx(sk.inertia_, rel=1e-5)
    assert got.n_iter == sk.n_iter_


def test_kmeans_relocates_an_empty_cluster_like_sklearn():
    X = blobs(500, k=4)
    init = np.vstack([X[[0, 100, 200]], [[1e4] * X.shape[1]]]).astype(np.float32)
    sk = SkKMeans(4, init=init, n_init=1).fit(X)
    got = kernels.kmeans(X, 4, init=init)
    assert np.bincount(got.labels.numpy(), minlength=4).min() > 0
    assert got.labels.numpy().tolist() == sk.labels_.tolist()


def test_kmeans_inertia_and_labels_are_consistent():
    X = blobs(1200, d=5, k=6, seed=3)
    got = kernels.kmeans(X, 6, n_init=2, seed=3, batch_size=128)
    centers, labels = got.centers.numpy().astype(np.float64), got.labels.numpy()
    D = cdist(X.astype(np.float64), centers, "sqeuclidean")
    assert labels.tolist() == D.argmin(axis=1).tolist()
    assert got.inertia == pytest.approx(D.min(axis=1).sum(), rel=1e-6)
    # each centre is the mean of its cluster (a Lloyd fixed point)
    for c in range(6):
        np.testing.assert_allclose(centers[c], X[labels == c].mean(axis=0), atol=1e-4)


def test_kmeans_restarts_are_deterministic_and_keep_the_best():
    X = blobs(1500, k=10, seed=5)
    one = kernels.kmeans(X, 10, n_init=1, seed=7)
    three = kernels.kmeans(X, 10, n_init=3, seed=7)
    assert three.inertia <= one.inertia  # the first restart of three is `one`
    again = kernels.kmeans(X, 10, n_init=3, seed=7)
    assert torch.equal(three.labels, again.labels) and torch.equal(three.centers, again.centers)
    sk = SkKMeans(10, n_init=10, random_state=0).fit(X)
    assert three.inertia <= sk.inertia_ * 1.02


@pytest.mark.parametrize("bad", [dict(n_clusters=0), dict(n_clusters=11), dict(n_init=0)])
def test_kmeans_rejects_bad_arguments(bad):
    kwargs = dict(n_clusters=3, n_init=1) | bad
    with pytest.raises(ValueError, match=r"n_clusters|n_init"):
        kernels.kmeans(np.zeros((10, 2), dtype=np.float32), **kwargs)


def test_sq_distances_to_matches_cdist_in_the_norms_precision():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(103, 5)).astype(np.float32)
    Xt = torch.from_numpy(X)
    got = kernels.sq_distances_to(Xt, (Xt * Xt).sum(dim=1), Xt[7], chunk=10)
    np.testing.assert_allclose(got.numpy(), cdist(X, X[7:8], "sqeuclidean")[:, 0], atol=1e-4)
    assert got[7] == 0.0 and got.dtype == torch.float32
    norms64 = torch.from_numpy(np.einsum("ij,ij->i", X, X).astype(np.float64))
    assert kernels.sq_distances_to(Xt, norms64, Xt[7], chunk=10).dtype == torch.float64


def test_kmeans_labels_follow_scikit_learn_and_auto_is_one_restart():
    X = blobs(300)
    expected = SkKMeans(4, n_init="auto", random_state=3).fit_predict(X)
    assert kernels.kmeans_labels(X, 4, 3).tolist() == expected.tolist()
    assert kernels.kmeans_labels(X, 1, 3).tolist() == [0] * 300
    auto = kernels.kmeans(X, 4, n_init="auto", seed=3)
    one = kernels.kmeans(X, 4, n_init=1, seed=3)
    assert torch.equal(auto.labels, one.labels)
    assert kernels.kmeans_labels(X, 4, 3, device="cpu").tolist() == auto.labels.tolist()
    mini = MiniBatchKMeans(4, batch_size=50, n_init="auto", random_state=3).fit_predict(X)
    got = kernels.kmeans_labels(X, 4, 3, minibatch_above=3, batch_size=50)
    assert got.tolist() == mini.tolist()
