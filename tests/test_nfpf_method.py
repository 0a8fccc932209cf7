"""The NFPF selector: budgets, determinism, seeding rules
against brute force, behaviour on clusters + outliers, quirks, configs and bad input."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.cluster import KMeans

from nfpf.core.api import CONFIG_DIR
from nfpf.core.selection import Pool
from nfpf.method.progressive import NFPF

FAST = dict(ref_hidden=120, progress=False, kmeans_n_init=2)


def clusters_and_outliers(seed: int = 0, K: int = 5, side: int = 10, m: int = 40,
                          n_out: int = 4):
    """Image-like pool: K random binary prototypes + noise, and uniform-noise outliers."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((K, side * side)) < 0.5).astype(float)
    X = np.vstack([np.clip(p * 0.8 + 0.1 + rng.normal(scale=0.15, size=(m, side * side)), 0, 1)
                   for p in protos])
    X = np.vstack([X, rng.random((n_out, side * side))]).astype(np.float32)
    labels = np.concatenate([np.repeat(np.arange(K), m), -np.ones(n_out, dtype=int)])
    images = X.reshape(-1, side, side)
    return Pool(features=X, images=images, n_classes=K), labels


@pytest.fixture(scope="module")
def blobs():
    return clusters_and_outliers(0)


# ------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("seeding", ["kmeans_margin", "random"])
@pytest.mark.parametrize("budget", [4, 10, 21, 33])
def test_exactly_budget_distinct_indices_around_seed_count(blobs, budget, seeding):
    pool, _ = blobs
    sel = NFPF(**FAST, n_seeds=10, k=4, seeding=seeding)  # 10 seeds: 2 per cluster
    idx = sel.select(pool, budget, seed=0)
    assert idx.shape == (budget,) and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < pool.n
    assert len(sel.seeds_) == min(10, budget)
    np.testing.assert_array_equal(idx[: len(sel.seeds_)], sel.seeds_)
    rounds = int(np.ceil(max(budget - 10, 0) / 4))
    assert len(sel.history_) == rounds
    # the current SFLM grows as L = 10 + t
    assert [h["n_hidden"] for h in sel.history_] == [10 + t for t in range(1, rounds + 1)]
    json.dumps(sel.info_), json.dumps(sel.history_)  # both JSON-serialisable


def test_budget_equals_pool_size():
    pool, _ = clusters_and_outliers(1, K=3, m=8, n_out=1)
    idx = NFPF(**FAST, k=5).select(pool, pool.n, seed=0)
    assert np.array_equal(np.sort(idx), np.arange(pool.n))


@pytest.mark.parametrize(("n", "budget", "kwargs"), [
    (1, 1, {}),
    (2, 1, {}),
    (3, 2, {}),
    (5, 5, dict(seeding="random")),
    (6, 4, dict(n_clusters=2, k=1)),
])
def test_tiny_pools(n, budget, kwargs):
    X = np.random.default_rng(n).random((n, 7)).astype(np.float32)
    idx = NFPF(**FAST, **kwargs).select(X, budget, seed=3)
    assert idx.shape == (budget,) and np.unique(idx).size == budget and idx.max() < n


def test_seeds_only_fills_the_budget(blobs):
    pool, _ = blobs
    sel = NFPF(**FAST, progressive=False)
    idx = sel.select(pool, 23, seed=0)  # 23 = 5 clusters x 4 + 3 round-robin
    assert np.unique(idx).size == 23 and sel.history_ == []
    assert sel.reference_errors_ is None  # no SFLM was needed
    assert sel.info_["seed_rule"] == "per_cluster_then_round_robin"


# -------------------------------------------------------------------- determinism
def test_same_seed_same_indices_and_different_seeds_differ(blobs):
    pool, _ = blobs
    a = NFPF(**FAST, k=3).select(pool, 30, seed=0)
    b = NFPF(**FAST, k=3).select(pool, 30, seed=0)
    c = NFPF(**FAST, k=3).select(pool, 30, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))


def test_faithful_q3_run_seed_has_no_effect(blobs):
    pool, _ = blobs
    a = NFPF(**FAST, k=3, faithful=True).select(pool, 30, seed=0)
    b = NFPF(**FAST, k=3, faithful=True).select(pool, 30, seed=1)
    np.testing.assert_array_equal(a, b)  # the released code's behaviour (quirk Q3)


def test_labels_never_reach_the_selector(blobs):
    pool, labels = blobs
    assert "labels" not in inspect.signature(Pool).parameters
    assert list(inspect.signature(NFPF._select).parameters) == ["self", "pool", "budget",
                                                               "seed"]
    with_meta = Pool(features=pool.features, images=pool.images, n_classes=pool.n_classes,
                     meta={"labels": labels, "note": "must not be read"})
    a = NFPF(**FAST, k=3).select(pool, 20, seed=0)
    b = NFPF(**FAST, k=3).select(with_meta, 20, seed=0)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------- clusters and outliers
def test_reference_error_higher_for_outliers(blobs):
    pool, labels = blobs
    sel = NFPF(ref_hidden=300, progress=False, k=2, seeding="random")
    sel.select(pool, 15, seed=0)
    e = sel.reference_errors_
    assert e.shape == (pool.n,)
    assert e[labels < 0].min() > e[labels >= 0].max()


@pytest.mark.parametrize("seeding", ["kmeans_margin", "random"])
@pytest.mark.parametrize("data_seed", [0, 1])
def test_selection_covers_every_cluster_and_rounds_skip_outliers(seeding, data_seed):
    pool, labels = clusters_and_outliers(data_seed)
    sel = NFPF(ref_hidden=300, progress=False, k=2, seeding=seeding, kmeans_n_init=3)
    idx = sel.select(pool, 15, seed=data_seed)  # 3 per cluster
    assert set(labels[idx]) >= set(range(5))
    chosen_in_rounds = [i for h in sel.history_ for i in h["chosen"]]
    assert len(chosen_in_rounds) == 15 - len(sel.seeds_)
    assert (labels[chosen_in_rounds] >= 0).all()  # outliers score low (pearson RD)


# ------------------------------------------------------------------------ seeding
def _brute_force_seeds(features, k, per_cluster, random_state, key):
    km = KMeans(n_clusters=k, n_init=2, max_iter=300, random_state=random_state).fit(features)
    dist = km.transform(features)
    lab = dist.argmin(1)
    s = np.sort(dist, axis=1)
    score = s[:, 1] - s[:, 0] if key == "margin" else s[:, 0]
    out = set()
    for c in range(k):
        members = np.flatnonzero(lab == c)
        out |= set(members[np.argsort(score[members], kind="stable")[:per_cluster]].tolist())
    return out


@pytest.mark.parametrize(("seeding", "key"), [("kmeans_margin", "margin"),
                                              ("kmeans_center", "center")])
def test_kmeans_seeds_match_brute_force(blobs, seeding, key):
    pool, _ = blobs
    sel = NFPF(**FAST, seeding=seeding)
    sel.select(pool, 40, seed=0)  # floor(0.3 * 40 / 5) = 2 per cluster
    assert len(sel.seeds_) == 10
    expected = _brute_force_seeds(pool.features, 5, 2, sel.info_["kmeans_random_state"], key)
    assert set(sel.seeds_.tolist()) == expected


def test_zero_per_cluster_rule_takes_one_from_largest_clusters(blobs):
    pool, _ = blobs
    sel = NFPF(**FAST, k=2)
    sel.select(pool, 10, seed=0)  # floor(0.3 * 10) = 3 seeds < K = 5 clusters
    assert sel.info_["seed_rule"] == "one_per_largest_cluster"
    assert len(sel.seeds_) == 3


def test_rd_seeding_and_pca_features_run(blobs):
    pool, labels = blobs
    sel = NFPF(**FAST, seeding="kmeans_rd", seed_features="pca", seed_pca_components=5)
    idx = sel.select(pool, 40, seed=0)
    assert np.unique(idx).size == 40
    assert (labels[sel.seeds_] >= 0).all()  # the empty-model RD avoids the noise images


def test_all_remaining_candidates_and_mse_score(blobs):
    pool, _ = blobs
    sel = NFPF(**FAST, candidate_pool=None, score="mse", k=5)
    idx = sel.select(pool, 30, seed=0)
    assert np.unique(idx).size == 30
    first = sel.history_[0]
    assert first["n_candidates"] == pool.n - len(sel.seeds_)
    assert first["scores"] == sorted(first["scores"], reverse=True)


# ------------------------------------------------------------------------ configs
def test_yaml_defaults_equal_class_defaults():
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "selector" / "nfpf.yaml"))
    assert cfg.pop("_target_") == "nfpf.method.NFPF"
    defaults = {name: p.default for name, p in inspect.signature(NFPF).parameters.items()}
    assert cfg == defaults


def test_ablation_variants_extend_nfpf_and_change_what_they_name():
    from nfpf.core.api import load_selector_config

    base = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "selector" / "nfpf.yaml"))
    files = sorted(p for p in (CONFIG_DIR / "selector" / "ablation").glob("nfpf_*.yaml")
                   if not p.name.startswith("nfpf_plus"))  # those extend nfpf_plus
    assert len(files) >= 9
    for path in files:
        own = OmegaConf.to_container(OmegaConf.load(path))
        assert own.pop("defaults") == ["/selector/nfpf@_here_", "_self_"], path.name
        cfg = OmegaConf.to_container(load_selector_config(f"ablation/{path.stem}"))
        changed = {k for k in base if cfg.get(k) != base[k]}
        assert set(cfg) == set(base), path.name
        assert changed == set(own) and changed, path.name
        NFPF(**{k: v for k, v in cfg.items() if k != "_target_"})  # valid parameters


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(ref_hidden=0), "ref_hidden must be"),
    (dict(C=0), "C must be"),
    (dict(C=-0.1), "C must be"),
    (dict(ref_activation="sigmoid", ref_type=0), "undefined"),
    (dict(cur_activation="sigmoid"), "undefined"),  # with cur_type=0
    (dict(cur_activation="tanh"), "cur_activation must be one of"),
    (dict(cur_hidden=0, cur_hidden_growth=0), "cur_hidden"),
    (dict(candidate_pool=0), "candidate_pool"),
    (dict(candidate_pool="most"), "candidate_pool"),
    (dict(k=0), "k must be"),
    (dict(seed_fraction=1.5), "seed_fraction"),
    (dict(n_seeds=0), "n_seeds"),
    (dict(score="cosine"), "score"),
    (dict(seeding="kmeans++"), "seeding"),
    (dict(seed_features="tsne"), "seed_features"),
    (dict(ref_normalisation="batch"), "ref_normalisation"),
    (dict(n_clusters=0), "n_clusters"),
    (dict(orthonormalisation="eig"), "orthonormalisation"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NFPF(**kwargs)


def test_pool_smaller_than_seeding_needs():
    X = np.random.default_rng(0).random((6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="at least K samples"):
        NFPF(**FAST).select(Pool(features=X, n_classes=10), 3)
    with pytest.raises(ValueError, match="n_seeds=8"):
        NFPF(**FAST, n_seeds=8).select(X, 3)


def test_nan_and_constant_pools():
    X = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NFPF(**FAST).select(X, 5)
    with pytest.raises(ValueError, match="constant"):
        NFPF(**FAST).select(np.ones((20, 4), dtype=np.float32), 5)


def test_streamed_pca_equals_sklearn_pca():
    from sklearn.decomposition import PCA

    from nfpf.method.seeding import pca_features

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(500, 30)) @ rng.normal(size=(30, 30)) + 3.0).astype(np.float32)
    ours = pca_features(X, 6, batch_size=64)
    ref = PCA(n_components=6, svd_solver="full").fit_transform(X.astype(np.float64))
    signs = np.sign((ours * ref).sum(0))  # components are defined up to sign
    np.testing.assert_allclose(ours * signs, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("faithful", [False, True])
def test_candidate_errors_depend_on_the_batch_only_in_faithful_mode(faithful):
    from nfpf.method.sflm import SFLM, draw_weights

    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(300, 20)))
    w, b = draw_weights(15, 20, np.random.default_rng(1))
    cur = SFLM(15, "sine", 0, 1e-2, input_weights=w, bias=b, faithful=faithful)
    cur.fit(X[:40])
    cand = np.arange(40, 300)
    alone = cur.errors(X, kind="pearson", rows=cand[:30])
    in_batch = cur.errors(X, kind="pearson", rows=cand)[:30]
    # Fixed (Q1): hidden units rescaled with the fit's min/max, so a candidate's error is the
    # same whatever else is in its batch; faithful: the batch's own min/max (released code).
    assert np.allclose(alone, in_batch, rtol=1e-6) != faithful


# ----------------------------------------------------------- reference beside seeding
@pytest.mark.parametrize("seeding", ["kmeans_margin", "kmeans_center"])
def test_selection_does_not_depend_on_n_jobs_or_overlapped_seeding(seeding):
    """n_jobs = 1 fits the reference after the seeding; n_jobs = 2 fits it beside the seeding
    with batches side by side: same reference errors bit for bit, same picks."""
    import torch

    rng = np.random.default_rng(3)
    X = (rng.normal(size=(6, 40))[rng.integers(0, 6, 700)]
         + rng.normal(scale=0.7, size=(700, 40))).astype(np.float32)
    pool = Pool(features=X, n_classes=6)
    before = torch.get_num_threads()
    runs = {}
    for n_jobs in (1, 2, 3):
        sel = NFPF(**FAST, seeding=seeding, n_jobs=n_jobs, batch_size=64)
        runs[n_jobs] = (sel.select(pool, 60, seed=4), sel)
    assert runs[1][1].info_["reference_overlapped_seeding"] is False
    assert runs[2][1].info_["reference_overlapped_seeding"] is True
    for n_jobs in (2, 3):
        np.testing.assert_array_equal(runs[n_jobs][0], runs[1][0])
        np.testing.assert_array_equal(runs[n_jobs][1].reference_errors_,
                                      runs[1][1].reference_errors_)
        np.testing.assert_array_equal(runs[n_jobs][1].seeds_, runs[1][1].seeds_)
    assert torch.get_num_threads() == before
    # the reference is the plain SFLM fitted on the pool (nothing lost in the overlap)
    from nfpf.method.sflm import SFLM
    ss_ref = np.random.default_rng(np.random.SeedSequence(4).spawn(4)[0])
    ref = SFLM(FAST["ref_hidden"], random_state=ss_ref, batch_size=64, n_jobs=1).fit(
        pool.pixels())
    np.testing.assert_array_equal(ref.errors(pool.pixels(), rescale="fit"),
                                  runs[2][1].reference_errors_)


def test_reference_error_in_the_background_is_raised(monkeypatch):
    import nfpf.method.progressive

    def broken(*args, **kwargs):
        raise ValueError("the reference SFLM failed")

    monkeypatch.setattr(nfpf.method.progressive, "reference_errors", broken)
    X = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    sel = NFPF(**FAST, n_jobs=2)  # n_jobs > 1: the reference is fitted beside the seeding
    with pytest.raises(ValueError, match="the reference SFLM failed"):
        sel.select(Pool(features=X, n_classes=3), 20, seed=0)


def test_qr_orthonormalisation_reaches_the_reference_and_keeps_the_seeds():
    """orthonormalisation='qr' changes the reference SFLM to the QR-drawn one (checked against
    a plain SFLM) but not the K-means seeds, and the selection stays exact and deterministic."""
    from nfpf.method.sflm import SFLM

    rng = np.random.default_rng(5)
    X = (rng.normal(size=(5, 30))[rng.integers(0, 5, 400)]
         + rng.normal(scale=0.7, size=(400, 30))).astype(np.float32)
    pool = Pool(features=X, n_classes=5)
    qr = NFPF(**FAST, orthonormalisation="qr", n_jobs=1, batch_size=64)
    picks = qr.select(pool, 40, seed=2)
    svd = NFPF(**FAST, n_jobs=1, batch_size=64)
    svd.select(pool, 40, seed=2)
    np.testing.assert_array_equal(qr.seeds_, svd.seeds_)
    ss_ref = np.random.default_rng(np.random.SeedSequence(2).spawn(4)[0])
    ref = SFLM(FAST["ref_hidden"], random_state=ss_ref, batch_size=64, n_jobs=1,
               orthonormalisation="qr").fit(pool.pixels())
    np.testing.assert_array_equal(ref.errors(pool.pixels(), rescale="fit"), qr.reference_errors_)
    assert not np.allclose(qr.reference_errors_, svd.reference_errors_)
    assert len(np.unique(picks)) == 40
    np.testing.assert_array_equal(
        picks, NFPF(**FAST, orthonormalisation="qr", n_jobs=1, batch_size=64)
        .select(pool, 40, seed=2))


# ------------------------------------------------------------------------ memory
@pytest.mark.parametrize("faithful", [False, True])
def test_memory_reuses_budget_independent_work_with_identical_picks(tmp_path, faithful):
    # the K-means seeding and the reference SFLM do not depend on the budget: with a
    # memory, the second budget reuses both and still picks exactly what it picks alone
    pool, _ = clusters_and_outliers(2)
    params = dict(FAST, k=4, faithful=faithful)
    for budget in (12, 30):
        plain = NFPF(**params)
        expected = plain.select(pool, budget, seed=3)
        cached = NFPF(**params, memory=str(tmp_path))
        np.testing.assert_array_equal(cached.select(pool, budget, seed=3), expected)
        np.testing.assert_array_equal(cached.reference_errors_, plain.reference_errors_)
        assert cached.info_["kmeans_inertia"] == plain.info_["kmeans_inertia"]
        assert cached.info_["memory_hits"] == ([] if budget == 12
                                               else ["reference", "seeding_kmeans"])
    assert plain.info_["memory_hits"] == []


def test_memory_misses_when_seed_data_or_parameters_change(tmp_path):
    pool, _ = clusters_and_outliers(2)
    other, _ = clusters_and_outliers(4)
    NFPF(**FAST, memory=str(tmp_path)).select(pool, 20, seed=0)
    for sel, data, seed in [(NFPF(**FAST, memory=str(tmp_path)), pool, 1),
                            (NFPF(**FAST, memory=str(tmp_path)), other, 0),
                            (NFPF(**{**FAST, "ref_hidden": 60}, memory=str(tmp_path)), pool, 0),
                            (NFPF(**{**FAST, "kmeans_n_init": 3}, memory=str(tmp_path)), pool, 0)]:
        sel.select(data, 20, seed=seed)
        hits = sel.info_["memory_hits"]
        if sel.ref_hidden == 60:
            assert hits == ["seeding_kmeans"]  # only the reference changed
        elif sel.kmeans_n_init == 3:
            assert hits == ["reference"]  # only the K-means changed
        else:
            assert hits == []


def test_bad_memory_is_rejected():
    with pytest.raises(ValueError, match="memory"):
        NFPF(memory=3)


EXECUTION = ("dtype", "batch_size", "progress", "stream", "n_jobs", "memory", "device")


def test_execution_knobs_are_keyword_only_and_validated_together():
    params = inspect.signature(NFPF.__init__).parameters
    keyword_only = [name for name, p in params.items() if p.kind is p.KEYWORD_ONLY]
    assert keyword_only == list(EXECUTION)
    assert NFPF().get_params()["device"] == "auto"  # flat, as every selector's
    for bad, match in [({"stream": "sometimes"}, "stream"), ({"batch_size": 0}, "batch_size"),
                       ({"n_jobs": 0}, "n_jobs"), ({"device": "tpu"}, "device"),
                       ({"dtype": "float16"}, "dtype")]:
        with pytest.raises(ValueError, match=match):
            NFPF(**bad)


def test_execution_knobs_set_after_construction_are_checked_before_any_work(blobs):
    pool, _ = blobs
    sel = NFPF(**FAST)
    sel.memory = 3  # as nfpf-run sets memory after building the selector
    with pytest.raises(ValueError, match="memory"):
        sel.select(pool, 10, seed=0)
    assert not hasattr(sel, "seeds_")


def test_sflm_input_features_reconstructs_the_embedding():
    """sflm_input="features": the SFLMs model the pool's features, as NFPF does on a pool
    that carries no images; the default models the pixels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(len(digits.data), 12)).astype(np.float32)
    with_images = Pool(features=embedding, images=(digits.images / 16.0).astype(np.float32),
                       n_classes=10)
    without = Pool(features=embedding, n_classes=10)
    on_features = NFPF(progress=False, sflm_input="features", device="cpu")
    picks = on_features.select(with_images, 40, seed=0)
    np.testing.assert_array_equal(
        picks, NFPF(progress=False, device="cpu").select(without, 40, seed=0))
    assert on_features.info_["sflm_input"] == "features"
    on_pixels = NFPF(progress=False, device="cpu").select(with_images, 40, seed=0)
    assert not np.array_equal(picks, on_pixels)
    with pytest.raises(ValueError, match="sflm_input must be one of"):
        NFPF(sflm_input="embedding")


# ------------------------------------------------------------ one selection's state
def _picks_and_rounds(selector, pool, budget, seed):
    picks = selector.select(pool, budget, seed=seed)
    return picks, [record["chosen"] for record in selector.history_], selector.seeds_.copy()


def _two_pools():
    first, _ = clusters_and_outliers(0)
    second, _ = clusters_and_outliers(3, K=4, m=30, n_out=2)
    return (first, 24, 0), (second, 17, 5)


@pytest.mark.parametrize("cls", ["nfpf", "nfpf_plus"])
def test_one_instance_serves_consecutive_and_nested_selections(cls, monkeypatch):
    """The state of a selection lives in its own object: an instance used for two
    selections, one after the other or the second inside the first's rounds, picks what two
    fresh instances pick, and ends with the results of the selection that finished last."""
    import nfpf.method.progressive
    from nfpf.method.plus import NFPFPlus

    make = {"nfpf": lambda: NFPF(**FAST, k=3),
            "nfpf_plus": lambda: NFPFPlus(ref_hidden=60, progress=False, k=3)}[cls]
    (pool_a, budget_a, seed_a), (pool_b, budget_b, seed_b) = _two_pools()
    fresh_a = _picks_and_rounds(make(), pool_a, budget_a, seed_a)
    fresh_b = _picks_and_rounds(make(), pool_b, budget_b, seed_b)

    shared = make()
    for fresh, (pool, budget, seed) in ((fresh_a, _two_pools()[0]), (fresh_b, _two_pools()[1])):
        got = _picks_and_rounds(shared, pool, budget, seed)
        np.testing.assert_array_equal(got[0], fresh[0])
        assert got[1] == fresh[1]
        np.testing.assert_array_equal(got[2], fresh[2])

    inner = {}
    scores = nfpf.method.progressive.rd_scores

    def scores_then_select_b(*args, **kwargs):
        if not inner:  # the first round of A: run all of B on the same instance
            inner["b"] = None
            inner["b"] = _picks_and_rounds(nested, pool_b, budget_b, seed_b)
        return scores(*args, **kwargs)

    monkeypatch.setattr(nfpf.method.progressive, "rd_scores", scores_then_select_b)
    nested = make()
    got_a = _picks_and_rounds(nested, pool_a, budget_a, seed_a)
    assert inner["b"] is not None
    for got, fresh in ((got_a, fresh_a), (inner["b"], fresh_b)):
        np.testing.assert_array_equal(got[0], fresh[0])
        assert got[1] == fresh[1]


@pytest.mark.parametrize("cls", ["nfpf", "nfpf_plus"])
def test_clone_of_a_used_selector_is_a_fresh_one(cls):
    from sklearn.base import clone

    from nfpf.method.plus import NFPFPlus

    make = {"nfpf": lambda: NFPF(**FAST, k=3),
            "nfpf_plus": lambda: NFPFPlus(ref_hidden=60, progress=False, k=3)}[cls]
    (pool, budget, seed), _ = _two_pools()
    used = make()
    used.select(pool, budget, seed=seed)
    assert {"info_", "history_", "seeds_", "reference_errors_"} <= set(vars(used))
    twin, fresh = clone(used), make()
    assert twin.get_params() == fresh.get_params()
    assert set(vars(twin)) == set(vars(fresh))
    # an estimator holds its parameters only: no selection state, no private attribute
    assert [key for key in vars(fresh) if key.endswith("_") or key.startswith("_")] == []
    np.testing.assert_array_equal(twin.select(pool, budget, seed=seed),
                                  used.select(pool, budget, seed=seed))


def test_whole_floats_count_as_whole_numbers():
    """NFPF's configs may give 5.0 for 5 (the released code's numbers): stored as given,
    they select exactly what the integers select."""
    pool, _ = clusters_and_outliers(1)
    counts = dict(ref_hidden=120, cur_hidden=10, cur_hidden_growth=1, candidate_pool=40,
                  k=3, n_seeds=6, seed_pca_components=5, n_clusters=5, kmeans_n_init=2,
                  kmeans_max_iter=300, epochs=1, ref_type=1, cur_type=0, batch_size=64,
                  n_jobs=1)
    as_ints = NFPF(**counts, seed_features="pca", progress=False)
    as_floats = NFPF(**{key: float(value) for key, value in counts.items()},
                     seed_features="pca", progress=False)
    assert as_floats.get_params()["k"] == 3.0 and isinstance(as_floats.k, float)
    np.testing.assert_array_equal(as_floats.select(pool, 25, seed=2),
                                  as_ints.select(pool, 25, seed=2))
    def rounds(selector):
        return [(r["chosen"], r["n_hidden"], r["scores"]) for r in selector.history_]

    assert rounds(as_floats) == rounds(as_ints) and len(rounds(as_ints)) == 7


# ------------------------------------------------------------ progress bar default
@pytest.mark.parametrize("method", ["nfpf", "nfpf_plus"])
def test_library_calls_draw_no_bar_unless_stderr_is_a_terminal(method, capsys, monkeypatch):
    """nfpf.select draws nothing on a stderr that is not a terminal (a file, a pipe, a
    notebook); progress=True always draws; a terminal gets the bar by default."""
    import io
    import sys

    import nfpf

    pool, _ = clusters_and_outliers(0)
    options = dict(ref_hidden=60, k=3, device="cpu")
    nfpf.select(pool, 20, method=method, **options)
    assert capsys.readouterr().err == ""
    nfpf.select(pool, 20, method=method, progress=True, **options)
    label = "NFPF+" if method == "nfpf_plus" else "NFPF"
    assert f"{label}:" in capsys.readouterr().err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    nfpf.select(pool, 20, method=method, **options)
    assert f"{label}:" in terminal.getvalue()
