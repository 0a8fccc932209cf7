"""The selectors' GPU paths, run on the CPU, against their CPU reference paths.

``torch_path`` makes :func:`nfpf.core.device.compute_device` return the CPU as a torch device, so
``device="auto"`` takes the branch a GPU would take, with the same torch code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits, make_blobs

import nfpf.baselines.probcover
import nfpf.core.device
from nfpf.baselines.coreset import Coreset
from nfpf.baselines.neighbors import knn_density, l2_normalize
from nfpf.baselines.probcover import ProbCover
from nfpf.baselines.simple import KMeans
from nfpf.baselines.ted import TED
from nfpf.baselines.typiclust import TypiClust
from nfpf.baselines.usl import USL
from nfpf.core import kernels
from nfpf.core.device import GpuMemoryError
from nfpf.core.selection import Pool

SELECTORS = [KMeans, Coreset, TED, TypiClust, ProbCover, USL]


@pytest.fixture
def torch_path(monkeypatch):
    monkeypatch.setattr(nfpf.core.device, "compute_device", lambda device, key="device":
                        torch.device("cpu"))


def digits() -> np.ndarray:
    return load_digits().data.astype(np.float32)


def both_paths(make, X, budget, seed, monkeypatch):
    """Picks of the reference path (device="cpu") and of the torch path, and both
    selectors (torch path first)."""
    reference = make(device="cpu")
    reference_picks = reference.select(X, budget, seed=seed)
    with monkeypatch.context() as m:
        m.setattr(nfpf.core.device, "compute_device", lambda device, key="device":
                  torch.device("cpu"))
        selector = make(device="auto")
        picks = selector.select(X, budget, seed=seed)
    return reference_picks, picks, selector, reference


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / len(a)


def cpu_clusters(monkeypatch):
    """Make the torch paths cluster with the CPU path's K-means."""
    labels = kernels.kmeans_labels

    def on_the_cpu(X, n_clusters, seed, device=None, **options):
        X = X.cpu().numpy() if isinstance(X, torch.Tensor) else X
        return labels(X, n_clusters, seed, **options)

    monkeypatch.setattr(kernels, "kmeans_labels", on_the_cpu)


# ------------------------------------------------------------------ identical arithmetic
@pytest.mark.parametrize("init", ["random", "mean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_coreset_torch_path_same_picks(init, seed, monkeypatch):
    X = np.random.default_rng(seed).normal(size=(2000, 16)).astype(np.float32)
    ref, got, sel, _ = both_paths(lambda **kw: Coreset(init=init, chunk_size=300, **kw), X, 60,
                               seed, monkeypatch)
    assert got.tolist() == ref.tolist()
    assert sel.info_["device"] == "cpu"


@pytest.mark.parametrize("budget", [8, 40])  # 40 > 500 / 16 takes the K^2 branch
def test_ted_torch_path_same_picks(budget, monkeypatch):
    X = digits()
    ref, got, sel, _ = both_paths(lambda **kw: TED(max_candidates=500, **kw), X, budget, 3,
                               monkeypatch)
    assert got.tolist() == ref.tolist()
    assert sel.info_["candidate_subset"] and sel.info_["device"] == "cpu"


@pytest.mark.parametrize("kwargs", [dict(delta=0.4), dict(delta=0.6, chunk_size=100),
                                    dict(delta=12.0, normalize=False)])
def test_probcover_torch_path_same_picks_given_delta(kwargs, monkeypatch):
    ref, got, sel, _ = both_paths(lambda **kw: ProbCover(**kwargs, **kw), digits(), 40, 1,
                               monkeypatch)
    assert got.tolist() == ref.tolist()
    assert sel.info_["n_edges"] > len(digits())  # a graph with edges beyond the self-loops


@pytest.mark.parametrize("purity_sample", [2000, 300])  # one exact pass; a sampled bound
def test_probcover_torch_path_same_purity_delta_given_the_clusters(purity_sample,
                                                                  monkeypatch):
    pool = Pool(digits(), n_classes=10)
    clusters = SkKMeans(10, n_init=1, random_state=0).fit_predict(
        l2_normalize(pool.features)).astype(np.int64)
    monkeypatch.setattr(nfpf.baselines.probcover, "_purity_labels", lambda *a, **k: clusters)
    ref, got, sel, reference = both_paths(
        lambda **kw: ProbCover(purity_sample=purity_sample, **kw), pool, 30, 2, monkeypatch)
    assert sel.info_["delta"] == reference.info_["delta"]
    assert got.tolist() == ref.tolist()


@pytest.mark.parametrize("squared", [True, False])
def test_knn_density_on_a_device_equals_the_cpu_path(squared):
    X = l2_normalize(digits())
    np.testing.assert_array_equal(knn_density(X, 15, squared=squared, chunk_size=500),
                                  knn_density(X, 15, squared=squared, device="cpu"))


# ------------------------------------------------------------------------ k-means based
def test_kmeans_torch_path_equals_reference_on_separated_clusters(monkeypatch):
    X, _ = make_blobs(3000, 10, centers=20, random_state=0)
    for seed in (0, 1):
        ref, got, _, _ = both_paths(KMeans, X, 20, seed, monkeypatch)
        assert sorted(got.tolist()) == sorted(ref.tolist())


def test_kmeans_torch_path_agreement_on_digits(monkeypatch):
    """The torch k-means draws scikit-learn's k-means++ centres, so it reaches the same
    clustering up to float32 rounding: measured on digits (B = 30, seeds 0-2) 93-100 % of
    the picks are shared (scikit-learn with another seed: 33-47 %), at the same inertia."""
    X = digits()
    overlaps, ratios = [], []
    for seed in range(3):
        reference = KMeans(device="cpu")
        ref = reference.select(X, 30, seed=seed)
        with monkeypatch.context() as m:
            m.setattr(nfpf.core.device, "compute_device", lambda device, key="device":
                      torch.device("cpu"))
            selector = KMeans()
            got = selector.select(X, 30, seed=seed)
        overlaps.append(overlap(ref, got))
        ratios.append(selector.info_["inertia"] / reference.info_["inertia"])
    assert min(overlaps) >= 0.9
    assert max(abs(r - 1) for r in ratios) < 1e-3


def test_kmeans_torch_path_agreement_above_minibatch(monkeypatch):
    """Above ``minibatch_above`` the CPU path runs MiniBatchKMeans and the torch path full
    Lloyd: measured on digits (B = 40 above 20, seed 0) 47 % of the picks are shared, more
    than between the CPU path's seeds 0 and 10 (30 %)."""
    ref, got, _, _ = both_paths(lambda **kw: KMeans(minibatch_above=20, **kw), digits(), 40,
                                0, monkeypatch)
    assert overlap(ref, got) >= 0.35


@pytest.mark.parametrize("kwargs", [dict(), dict(distance="euclidean", normalize=False)])
def test_typiclust_torch_path_same_picks_given_the_clusters(kwargs, monkeypatch):
    cpu_clusters(monkeypatch)
    ref, got, _, _ = both_paths(lambda **kw: TypiClust(**kwargs, **kw), digits(), 100, 0,
                                monkeypatch)
    assert got.tolist() == ref.tolist()


@pytest.mark.parametrize("budget", [10, 60])
def test_usl_torch_path_same_picks_given_the_clusters(budget, monkeypatch):
    cpu_clusters(monkeypatch)
    ref, got, _, _ = both_paths(lambda **kw: USL(k=20, chunk_size=300, **kw), digits(),
                                budget, 1, monkeypatch)
    assert got.tolist() == ref.tolist()


def test_k_means_based_torch_paths_agreement_on_digits(monkeypatch):
    """Measured on digits, seeds 0-2: where the CPU path runs KMeans (TypiClust B = 30,
    USL B = 100, ProbCover's purity K-means) both paths reach the same clusters and picks;
    for TypiClust at B = 100 the CPU path's MiniBatchKMeans and the torch path's Lloyd
    share 43-48 % of the picks (the CPU path with another seed: 35-48 %)."""
    pool = Pool(digits(), n_classes=10)
    for seed in range(3):
        for make, budget, least in ((TypiClust, 30, 0.9), (TypiClust, 100, 0.3),
                                    (lambda **kw: USL(k=20, **kw), 100, 0.9),
                                    (ProbCover, 40, 0.9)):
            ref, got, selector, _ = both_paths(make, pool, budget, seed, monkeypatch)
            assert overlap(ref, got) >= least
            assert selector.info_["device"] == "cpu"


def test_kmeans_torch_path_picks_are_nearest_to_its_centres(torch_path):
    X = digits()
    selector = KMeans(n_init=2, batch_size=100)
    got = selector.select(X, 25, seed=4)
    km = kernels.kmeans(X, 25, n_init=2, seed=4)
    d = ((X[:, None, :].astype(np.float64) - km.centers.numpy()[None]) ** 2).sum(-1)
    assert got.tolist() == d.argmin(axis=0).tolist()
    assert selector.info_["inertia"] == pytest.approx(km.inertia)


def test_kmeans_torch_path_fits_the_seeded_subset(torch_path):
    X = digits()
    selector = KMeans(fit_subset=400)
    got = selector.select(X, 10, seed=2)
    rows = np.sort(np.random.default_rng(2).choice(len(X), 400, replace=False))
    km = kernels.kmeans(X[rows], 10, n_init=3, seed=2)
    assert selector.info_["fit_subset"] == 400
    assert got.tolist() == kernels.nearest_distinct(X, km.centers).tolist()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make", SELECTORS, ids=lambda c: c.__name__)
def test_invalid_device_fails_at_construction(make):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda'"):
        make(device="gpu")


@pytest.mark.parametrize("make", SELECTORS, ids=lambda c: c.__name__)
def test_cuda_without_a_gpu_names_the_fix_before_any_work(make, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    selector = make(device="cuda")  # composes on a machine without a GPU
    pool = Pool(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match=r"device=cuda .* use device=auto .* or device=cpu"):
        selector.select(pool, 5)
    assert selector.info_ == {}  # nothing was computed


def test_gpu_out_of_memory_names_the_batch_option(torch_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")

    monkeypatch.setattr(kernels, "kmeans", out_of_memory)
    with pytest.raises(GpuMemoryError, match=r"kmeans ran out of GPU memory.*selector\.batch_size"):
        KMeans().select(digits(), 5)
