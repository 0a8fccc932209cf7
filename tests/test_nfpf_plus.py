"""Tests of NFPF+ (nfpf/method/plus.py): budget, determinism, options, no labels, errors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from nfpf.core.selection import Pool
from nfpf.method.plus import NFPFPlus
from nfpf.method.progressive import NFPF

FAST = {"ref_hidden": 40, "progress": False, "kmeans_n_init": 1}


def blobs(n_per=(40, 40, 40, 40), d=16, seed=0, spread=0.05):
    """Hand-made clustered pool: well separated Gaussian blobs inside [-1, 1]."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.7, 0.7, size=(len(n_per), d))
    X = np.concatenate([c + spread * rng.standard_normal((m, d))
                        for c, m in zip(centres, n_per, strict=True)])
    y = np.repeat(np.arange(len(n_per)), n_per)
    return np.clip(X, -1, 1).astype(np.float32), y


def make_pool(X, n_classes=4):
    images = ((X + 1) / 2).astype(np.float32)  # pixels() maps back to [-1, 1]
    return Pool(features=X, images=images, n_classes=n_classes)


@pytest.mark.parametrize("budget", [1, 3, 4, 12, 30, 160])
def test_exact_distinct_budget(budget):
    X, _ = blobs()
    idx = NFPFPlus(k=5, **FAST).select(make_pool(X), budget, seed=0)
    assert idx.shape == (budget,)
    assert len(np.unique(idx)) == budget
    assert idx.min() >= 0 and idx.max() < X.shape[0]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_pools(n):
    X, _ = blobs(n_per=(n,), d=6)
    X[:, 0] = np.linspace(-0.5, 0.5, n)  # not constant
    pool = Pool(features=X, images=(X + 1) / 2, n_classes=1)
    for budget in range(1, n + 1):
        idx = NFPFPlus(k=2, rd_pca_components=3, **FAST).select(pool, budget, seed=1)
        assert sorted(set(idx.tolist())) == sorted(idx.tolist()) and len(idx) == budget


def test_deterministic_per_seed():
    X, _ = blobs()
    pool = make_pool(X)
    a = NFPFPlus(**FAST).select(pool, 20, seed=3)
    b = NFPFPlus(**FAST).select(pool, 20, seed=3)
    np.testing.assert_array_equal(a, b)
    runs = {tuple(NFPFPlus(seeding="random", **FAST).select(pool, 20, seed=s)) for s in range(4)}
    assert len(runs) > 1  # the seed matters


def test_round_robin_spreads_over_clusters():
    """Unequal blobs: the global top-RD picks pile up; balance='equal' covers every blob
    evenly (the blobs are separable, so K-means recovers them)."""
    X, y = blobs(n_per=(150, 20, 20, 20), spread=0.03, seed=2)
    X[:150] += 0.25 * np.random.default_rng(0).standard_normal((150, X.shape[1]))  # complex blob
    X = np.clip(X, -1, 1)
    pool = make_pool(X)
    bal = NFPFPlus(balance="equal", balance_clusters=4, seed_fraction=0.1, k=4,
                   **FAST).select(pool, 40, seed=0)
    counts = np.bincount(y[bal], minlength=4)
    assert counts.min() >= 8, counts  # 40 picks, 4 blobs: 10 each (+- seeds)
    none = NFPFPlus(balance="none", typicality_weight=0.0, seed_fraction=0.1, k=4,
                    **FAST).select(pool, 40, seed=0)
    assert not np.array_equal(np.sort(bal), np.sort(none))
    assert np.bincount(y[none], minlength=4).max() > counts.max()


def test_options_change_behaviour():
    X, _ = blobs(n_per=(60, 60, 60, 60), d=20, spread=0.2)
    pool = make_pool(X)
    base = NFPFPlus(**FAST).select(pool, 40, seed=0)
    for change in ({"rd_space": "pixels"}, {"typicality_weight": 0.5},
                   {"balance": "none", "typicality_weight": 0.0},
                   {"seeding": "kmeans_margin"}, {"balance_clusters": None}):
        other = NFPFPlus(**{**FAST, **change}).select(pool, 40, seed=0)
        assert not np.array_equal(base, other), change
    # proportional vs equal differ only with unequal clusters
    Xu, _ = blobs(n_per=(120, 20, 20, 20), d=20, spread=0.2)
    pu = make_pool(Xu)
    eq = NFPFPlus(balance_clusters=4, **FAST).select(pu, 40, seed=0)
    pr = NFPFPlus(balance="proportional", balance_clusters=4, **FAST).select(pu, 40, seed=0)
    assert not np.array_equal(np.sort(eq), np.sort(pr))


def test_reduces_to_nfpf_progressive_step():
    """With every NFPF+ option off, NFPF+ is NFPF (non-faithful): identical picks."""
    X, _ = blobs(d=12, spread=0.2)
    pool = make_pool(X)
    kw = dict(candidate_pool=None, seeding="kmeans_center", seed_features="pixels", **FAST)
    plus = NFPFPlus(rd_space="pixels", balance="none", typicality_weight=0.0, **kw)
    a = plus.select(pool, 30, seed=0)
    nf = NFPF(**kw)
    b = nf.select(pool, 30, seed=0)
    np.testing.assert_array_equal(plus.seeds_, nf.seeds_)
    np.testing.assert_array_equal(a, b)
    # and the defaults (PCA space, balancing) do change the picks
    assert not np.array_equal(NFPFPlus(**kw).select(pool, 30, seed=0), b)


def test_reference_normalised_per_round_by_default():
    """NFPF+ normalises the reference error over each round's candidates (None and the
    default mean it), unlike NFPF's non-faithful default (once over the pool); with the
    same normalisation and every NFPF+ option off the two give the same picks."""
    X, _ = blobs(d=12, spread=0.2)
    pool = make_pool(X)
    kw = dict(candidate_pool=60, seeding="kmeans_center", seed_features="pixels", **FAST)
    off = dict(rd_space="pixels", balance="none", typicality_weight=0.0)
    default = NFPFPlus(**off, **kw).select(pool, 40, seed=0)
    np.testing.assert_array_equal(
        default, NFPFPlus(**off, ref_normalisation=None, **kw).select(pool, 40, seed=0))
    for normalisation in ("candidates", "pool"):
        np.testing.assert_array_equal(
            NFPFPlus(**off, ref_normalisation=normalisation, **kw).select(pool, 40, seed=0),
            NFPF(ref_normalisation=normalisation, **kw).select(pool, 40, seed=0))
    np.testing.assert_array_equal(
        default, NFPF(ref_normalisation="candidates", **kw).select(pool, 40, seed=0))


def test_ensemble_of_references_is_mean_of_normalised_errors():
    X, _ = blobs(d=12, spread=0.2)
    sel = NFPFPlus(n_references=3, **FAST)
    idx = sel.select(make_pool(X), 20, seed=0)
    assert len(np.unique(idx)) == 20
    assert sel.info_["n_references"] == 3


def test_no_labels_reach_selector():
    params = inspect.signature(NFPFPlus.__init__).parameters
    assert not any("label" in p or p == "y" for p in params)
    X, _ = blobs()
    with pytest.raises(TypeError):
        NFPFPlus(**FAST).select(make_pool(X), 10, seed=0, labels=np.zeros(160))
    pool = make_pool(X)
    assert not hasattr(pool, "labels")


@pytest.mark.parametrize("bad, match", [
    ({"rd_space": "simclr"}, "rd_space"),
    ({"rd_pca_components": 0}, "rd_pca_components"),
    ({"balance": "roundrobin"}, "balance"),
    ({"balance_clusters": 0}, "balance_clusters"),
    ({"typicality_weight": -1.0}, "typicality_weight"),
    ({"balance": "none"}, "typicality_weight"),  # default weight 3 needs clusters
    ({"n_references": 0}, "n_references"),
    ({"faithful": True}, "faithful"),
    ({"k": 0}, "k"),
    ({"candidate_pool": "some"}, "candidate_pool"),
])
def test_bad_parameters(bad, match):
    with pytest.raises(ValueError, match=match):
        NFPFPlus(**bad)


def test_budget_above_pool_raises():
    X, _ = blobs(n_per=(5, 5))
    with pytest.raises(ValueError):
        NFPFPlus(**FAST).select(make_pool(X, 2), 11, seed=0)


def test_budget_clusters_one_pick_per_cluster():
    """balance_clusters='budget': K = B, so the progressive picks land in distinct clusters
    not already holding a seed (every cluster has candidates left)."""
    X, _ = blobs(n_per=(50, 50, 50, 50), spread=0.3)
    sel = NFPFPlus(**FAST)  # balance_clusters="budget" is the default
    idx = sel.select(make_pool(X), 24, seed=0)
    lab = sel.balance_labels_
    assert lab.max() + 1 == 24 and sel.info_["balance_clusters"] == 24
    assert len(np.unique(lab[idx])) == 24  # one pick per cluster


def test_bad_balance_clusters_string():
    with pytest.raises(ValueError, match="balance_clusters"):
        NFPFPlus(balance_clusters="classes")


def test_balance_clusters_are_scikit_learns_kmeans_of_the_seed_space():
    """The balancing clusters come from the shared K-means dispatch: with K <= 500 on the
    CPU, scikit-learn's KMeans (3 restarts, kmeans_max_iter) of the seed space, seeded by the
    first draw of the rounds' generator; each sample in its nearest centre's cluster."""
    from sklearn.cluster import KMeans

    X, _ = blobs(n_per=(50, 50, 50, 50), spread=0.3)
    pool = make_pool(X)
    sel = NFPFPlus(seed_features="pixels", kmeans_max_iter=40, device="cpu", **FAST)
    sel.select(pool, 24, seed=7)
    rounds_rng = np.random.default_rng(np.random.SeedSequence(7).spawn(4)[3])
    km = KMeans(n_clusters=24, n_init=3, max_iter=40,
                random_state=int(rounds_rng.integers(2**31 - 1))).fit(pool.pixels())
    np.testing.assert_array_equal(sel.balance_labels_, km.transform(pool.pixels()).argmin(1))
