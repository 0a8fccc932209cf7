"""Scale: memmap/streamed NFPF, bounded modes equal exact modes below their bound, DDP, sweeps.

Every comparison is against an independent run of the exact (in-memory, unbounded) mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nfpf.core.selection import Pool
from nfpf.method.progressive import NFPF
from nfpf.method.sflm import SFLM

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"ref_hidden": 60, "progress": False, "batch_size": 256, "candidate_pool": 300,
         "kmeans_n_init": 2}


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 1500)
    X = (rng.normal(size=(1500, 24)) + 3.0 * rng.normal(size=(4, 24))[labels])
    images = rng.random((1500, 5, 6))
    return X.astype(np.float32), images.astype(np.float32)


@pytest.fixture(scope="module")
def on_disk(blobs, tmp_path_factory):
    X, images = blobs
    d = tmp_path_factory.mktemp("memmap")
    np.save(d / "x.npy", X)
    np.save(d / "x64.npy", X.astype(np.float64))
    np.save(d / "img.npy", images)
    return (np.load(d / "x.npy", mmap_mode="r"), np.load(d / "x64.npy", mmap_mode="r"),
            np.load(d / "img.npy", mmap_mode="r"))


# ------------------------------------------------------------------ NFPF streaming
@pytest.mark.parametrize("which", ["float32", "float64"])
def test_memmap_nfpf_equals_in_memory(blobs, on_disk, which, monkeypatch):
    X, _ = blobs
    mm = on_disk[0] if which == "float32" else on_disk[1]
    exact = NFPF(**SMALL).select(Pool(X.copy(), n_classes=4), 80, seed=3)

    def no_pixels(self):  # the streamed path must never build the pool-sized copy
        raise AssertionError("Pool.pixels() called on a streamed pool")

    monkeypatch.setattr(Pool, "pixels", no_pixels)
    sel = NFPF(**SMALL)  # stream="auto": the memmap is detected
    streamed = sel.select(Pool(mm, n_classes=4), 80, seed=3)
    assert sel.info_["streamed"] is True
    np.testing.assert_array_equal(streamed, exact)


@pytest.mark.parametrize(("seeding", "seed_features"),
                         [("kmeans_margin", "pixels"), ("kmeans_rd", "pca"),
                          ("kmeans_center", "features"), ("random", "features")])
def test_streamed_images_equal_in_memory(blobs, on_disk, seeding, seed_features):
    X, images = blobs
    kw = dict(SMALL, seeding=seeding, seed_features=seed_features, faithful=False)
    exact = NFPF(**kw, stream=False).select(Pool(X, images, n_classes=4), 60, seed=1)
    sel = NFPF(**kw)
    streamed = sel.select(Pool(on_disk[0], on_disk[2], n_classes=4), 60, seed=1)
    assert sel.info_["streamed"] is True
    np.testing.assert_array_equal(streamed, exact)
    # forcing the streamed path on in-memory arrays gives the same indices too
    forced = NFPF(**kw, stream=True).select(Pool(X, images, n_classes=4), 60, seed=1)
    np.testing.assert_array_equal(forced, exact)


def test_streamed_faithful_equals_in_memory(blobs, on_disk):
    X, images = blobs
    exact = NFPF(**SMALL, faithful=True, stream=False).select(Pool(X, images, n_classes=4), 50)
    streamed = NFPF(**SMALL, faithful=True).select(Pool(on_disk[0], on_disk[2], n_classes=4), 50)
    np.testing.assert_array_equal(streamed, exact)


def test_in_memory_pool_is_not_streamed_by_default(blobs):
    sel = NFPF(**SMALL)
    sel.select(Pool(blobs[0], n_classes=4), 20)
    assert sel.info_["streamed"] is False


def test_kmeans_fit_subset_not_reached_is_exact(blobs):
    pool = Pool(blobs[0], n_classes=4)
    exact = NFPF(**SMALL).select(pool, 60, seed=2)
    sel = NFPF(**SMALL, kmeans_fit_subset=len(blobs[0]))
    np.testing.assert_array_equal(sel.select(pool, 60, seed=2), exact)
    assert sel.info_["kmeans_fit_subset"] is None
    bounded = NFPF(**SMALL, kmeans_fit_subset=400)
    out = bounded.select(pool, 60, seed=2)
    assert bounded.info_["kmeans_fit_subset"] == 400
    assert len(np.unique(out)) == 60


def test_nfpf_bad_scale_parameters():
    with pytest.raises(ValueError, match="stream"):
        NFPF(stream="yes")
    with pytest.raises(ValueError, match="kmeans_fit_subset"):
        NFPF(kmeans_fit_subset=0)


def test_sflm_fit_on_memmap_equals_in_memory(blobs, on_disk):
    a = SFLM(30, "sigmoid", 1, random_state=0, batch_size=100, dtype="float64").fit(blobs[0])
    b = SFLM(30, "sigmoid", 1, random_state=0, batch_size=100, dtype="float64").fit(on_disk[0])
    np.testing.assert_array_equal(a.beta_, b.beta_)


# ------------------------------------------------------------------ bounded modes
def test_probcover_candidate_subset(blobs):
    from nfpf.baselines.probcover import ProbCover

    X = blobs[0][:300]
    exact = ProbCover().select(Pool(X, n_classes=4), 20, seed=0)  # purity rule for delta
    sel = ProbCover(max_candidates=300)
    np.testing.assert_array_equal(sel.select(Pool(X, n_classes=4), 20, seed=0), exact)
    assert sel.info_["candidate_subset"] is None
    # when it bites: identical to running the exact method on the subset itself
    sel = ProbCover(max_candidates=120)
    got = sel.select(Pool(X, n_classes=4), 20, seed=0)
    assert sel.info_["candidate_subset"] == 120
    subset = np.sort(np.random.default_rng(0).choice(300, size=120, replace=False))
    ref = ProbCover().select(Pool(X[subset], n_classes=4), 20, seed=0)
    np.testing.assert_array_equal(got, subset[ref])


def test_probcover_chunked_equals_unchunked(blobs):
    from nfpf.baselines.probcover import ProbCover

    X = blobs[0][:300]
    a = ProbCover().select(Pool(X, n_classes=4), 25, seed=1)
    b = ProbCover(chunk_size=37).select(Pool(X, n_classes=4), 25, seed=1)
    np.testing.assert_array_equal(a, b)


def test_usl_candidate_subset_and_chunks(blobs):
    from nfpf.baselines.usl import USL

    X = blobs[0][:300]
    kw = {"k": 10, "n_iters": 3}
    exact = USL(**kw).select(Pool(X), 20, seed=0)
    np.testing.assert_array_equal(USL(**kw, max_candidates=10**6).select(Pool(X), 20, seed=0),
                                  exact)
    np.testing.assert_array_equal(USL(**kw, chunk_size=33).select(Pool(X), 20, seed=0), exact)
    sel = USL(**kw, max_candidates=120)
    got = sel.select(Pool(X), 20, seed=0)
    assert sel.info_["candidate_subset"] == 120
    subset = np.sort(np.random.default_rng(0).choice(300, size=120, replace=False))
    np.testing.assert_array_equal(got, subset[USL(**kw).select(Pool(X[subset]), 20, seed=0)])


def test_coreset_chunked_equals_unchunked(blobs):
    from nfpf.baselines.coreset import Coreset

    X = blobs[0]
    a = Coreset(chunk_size=10**6).select(X, 50, seed=4)
    b = Coreset(chunk_size=97).select(X, 50, seed=4)
    np.testing.assert_array_equal(a, b)
    # independent reference: brute-force greedy k-center
    ref = [int(a[0])]
    dmin = ((X - X[ref[0]]) ** 2).sum(1)
    for _ in range(49):
        dmin[ref] = -1
        ref.append(int(dmin.argmax()))
        dmin = np.minimum(dmin, ((X - X[ref[-1]]) ** 2).sum(1))
    np.testing.assert_array_equal(a, ref)


@pytest.mark.parametrize(("target", "option", "bound", "n", "budget"), [
    ("nfpf.baselines.simple.KMeans", "minibatch_above", 12, 400, 12),  # mini-batch K-means
    ("nfpf.baselines.ted.TED", "max_candidates", 300, 300, 10),  # candidate subset
])
def test_bound_not_reached_is_exact(blobs, target, option, bound, n, budget):
    from hydra.utils import get_class

    selector = get_class(target)
    X = blobs[0][:n]
    exact = selector(**{option: None}).select(X, budget, seed=0)
    np.testing.assert_array_equal(selector(**{option: bound}).select(X, budget, seed=0), exact)


def test_kmeans_fit_subset(blobs):
    from sklearn.cluster import KMeans as SkKMeans

    from nfpf.baselines.simple import KMeans

    X = blobs[0][:400]
    # not reached: identical to fitting on the whole pool
    exact = KMeans().select(X, 12, seed=3)
    np.testing.assert_array_equal(KMeans(fit_subset=400).select(X, 12, seed=3), exact)
    # reached: centroids of a K-means fit on the seeded subset, nearest sample of the pool
    sel = KMeans(fit_subset=150)
    picks = sel.select(X, 12, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(400, size=150, replace=False))
    centers = SkKMeans(12, n_init=3, max_iter=300, random_state=3).fit(X[rows]).cluster_centers_
    d = ((X[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(-1)
    expected: list[int] = []  # each centre in turn takes its nearest sample not yet taken
    for j in range(12):
        expected.append(next(int(i) for i in np.argsort(d[:, j]) if i not in expected))
    np.testing.assert_array_equal(picks, expected)
    assert sel.info_["fit_subset"] == 150
    with pytest.raises(ValueError, match="fit_subset"):
        KMeans(fit_subset=0)


def test_knn_chunked_equals_unchunked(blobs):
    from nfpf.baselines.neighbors import knn_distances

    X = blobs[0][:300].astype(np.float64)
    a = knn_distances(X, 7)
    b = knn_distances(X, 7, chunk_size=13)
    full = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(a, np.sort(full, 1)[:, :7], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ DDP (2 processes, gloo)
@pytest.mark.slow
def test_sflm_ddp_two_processes_equals_one(blobs):
    from pytorch_lightning.strategies import DDPStrategy
    from torch.utils.data import DataLoader, TensorDataset

    from nfpf.method.sflm_module import fit_sflm

    X = blobs[0][:400].astype(np.float64)  # a multiple of 2: no DistributedSampler padding
    loader = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=50)
    strategy = DDPStrategy(process_group_backend="gloo", start_method="spawn")
    ddp = fit_sflm(SFLM(25, "sigmoid", 1, random_state=5, dtype="float64"), loader,
                   accelerator="cpu", devices=2, strategy=strategy)
    one = SFLM(25, "sigmoid", 1, random_state=5, dtype="float64").fit(X)
    assert ddp.n_samples_seen_ == len(X)
    np.testing.assert_allclose(ddp.beta_, one.beta_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ddp.output_bias_, one.output_bias_, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ sweeps (submitit local)
@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cmd = [sys.executable, "-m", "nfpf.cli.run", "experiment=quickstart", "selector=random",
           "seed=0,1", "budget_per_class=2", "hydra/launcher=submitit_local",
           f"paths.output_dir={tmp_path}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(tmp_path.rglob("result.json"))
    assert len(results) == 2, [str(p) for p in tmp_path.rglob("*")][:50]
    seeds = sorted(json.loads(p.read_text()).get("seed") for p in results)
    assert seeds == [0, 1]
    assert any(tmp_path.rglob(".submitit"))  # the jobs went through submitit


def test_typiclust_typicality_subset(blobs):
    from nfpf.baselines.neighbors import knn_density
    from nfpf.baselines.typiclust import TypiClust

    X = blobs[0][:300]
    # not reached: identical to the exact mode
    exact = TypiClust().select(X, 40, seed=2)
    np.testing.assert_array_equal(TypiClust(typicality_subset=300).select(X, 40, seed=2), exact)
    # reached, one cluster and one pick: the most typical of the seeded sample of 50
    sel = TypiClust(max_clusters=1, typicality_subset=50, distance="euclidean", normalize=False)
    pick = sel.select(X, 1, seed=4)
    sample = np.sort(np.random.default_rng(4).choice(np.arange(300), size=50, replace=False))
    assert pick[0] == sample[np.argmax(knn_density(X[sample], 20))]
    assert sel.info_["typicality_subsampled_picks"] == 1
    with pytest.raises(ValueError, match="typicality_subset"):
        TypiClust(typicality_subset=1)
