"""NFPF and NFPF+ on a GPU: the device option, and the GPU code path run on the CPU.

The GPU path of :class:`nfpf.method.NFPF` is device-agnostic torch code; here it runs on a
CPU torch device (``compute_device`` patched), which checks everything but the hardware:
with a random seeding (no K-means) its picks equal the CPU path's; with the K-means seeding
(torch k-means instead of scikit-learn's) they agree in part. ``tests/test_gpu.py`` runs
the same comparisons on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import nfpf.core.device
from nfpf.core import kernels
from nfpf.core.device import GpuMemoryError
from nfpf.core.selection import Pool
from nfpf.method.plus import NFPFPlus
from nfpf.method.progressive import NFPF
from nfpf.method.seeding import pca_features


@pytest.fixture(scope="module")
def digits_pool() -> Pool:
    digits = load_digits()
    return Pool(features=(digits.data / 16.0).astype(np.float32),
                images=(digits.images / 16.0).astype(np.float32), n_classes=10)


@pytest.fixture
def gpu_path_on_cpu(monkeypatch):
    """Every selector's GPU branch, computed on the CPU."""
    monkeypatch.setattr(nfpf.core.device, "compute_device",
                        lambda device, key="device": torch.device("cpu"))


def select_both(make, pool: Pool, budget: int, seed: int, monkeypatch) -> tuple:
    cpu = make(device="cpu").select(pool, budget, seed=seed)
    with monkeypatch.context() as patch:
        patch.setattr(nfpf.core.device, "compute_device",
                      lambda device, key="device": torch.device("cpu"))
        selector = make(device="auto")
        gpu = selector.select(pool, budget, seed=seed)
    return cpu, gpu, selector


@pytest.mark.parametrize("seed", [0, 1])
def test_gpu_path_picks_equal_cpu_picks_without_kmeans(digits_pool, monkeypatch, seed):
    """Reference SFLM, current SFLMs and RD scores: the same arithmetic on the GPU path."""
    import nfpf.method.progressive

    copies = []
    to_device = nfpf.method.progressive.device_rows
    monkeypatch.setattr(nfpf.method.progressive, "device_rows",
                        lambda *args: copies.append(args[1]) or to_device(*args))

    def make(device):
        return NFPF(seeding="random", progress=False, device=device)

    cpu, gpu, _ = select_both(make, digits_pool, 60, seed, monkeypatch)
    assert copies == [torch.device("cpu")]  # only the GPU path copied the pixels
    np.testing.assert_array_equal(cpu, gpu)


def test_gpu_path_with_kmeans_seeding_agrees_in_part(digits_pool, monkeypatch):
    """The K-means seeding runs torch's k-means on the GPU path: its picks share most of
    the CPU path's, and are B distinct indices."""
    overlaps = []
    for seed in (0, 1, 2):
        cpu, gpu, _ = select_both(lambda device: NFPF(progress=False, device=device),
                                  digits_pool, 100, seed, monkeypatch)
        assert len(set(gpu.tolist())) == 100
        overlaps.append(len(set(cpu.tolist()) & set(gpu.tolist())) / 100)
    assert np.mean(overlaps) >= 0.3, overlaps


def test_gpu_seeding_kmeans_equals_the_kernel_clustering(digits_pool, gpu_path_on_cpu):
    """The seeds of the GPU path come from kernels.kmeans with the run's K-means seed."""
    selector = NFPF(progress=False, progressive=False, seeding="kmeans_center")
    picks = selector.select(digits_pool, 10, seed=3)
    found = kernels.kmeans(digits_pool.features, 10, n_init=10, max_iter=300,
                           seed=selector.info_["kmeans_random_state"])
    dist = kernels.center_distances(digits_pool.features, found.centers).numpy()
    labels = dist.argmin(1)
    expected = {int(np.flatnonzero(labels == c)[np.argmin(dist[labels == c, c])])
                for c in range(10)}
    assert set(picks.tolist()) == expected
    assert selector.info_["kmeans_inertia"] == pytest.approx(found.inertia)


def test_pca_on_a_device_equals_the_cpu_pca_up_to_signs(digits_pool):
    X = digits_pool.pixels()
    cpu = pca_features(X, 8, batch_size=500)
    dev = pca_features(X, 8, batch_size=500, device=torch.device("cpu"))
    signs = np.sign((cpu * dev).sum(0))
    np.testing.assert_allclose(dev * signs, cpu, atol=2e-4)


def test_nfpf_plus_gpu_path(digits_pool, monkeypatch):
    """NFPF+ on the GPU path (PCA, balance clustering with K = B on the device)."""
    cpu, gpu, selector = select_both(lambda device: NFPFPlus(progress=False, device=device),
                                     digits_pool, 50, 0, monkeypatch)
    assert len(set(gpu.tolist())) == 50 and selector.info_["balance_clusters"] == 50
    assert len(set(cpu.tolist()) & set(gpu.tolist())) >= 10


def test_device_option_is_validated_and_a_missing_gpu_refused(digits_pool, monkeypatch):
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        NFPF(device="gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert NFPF(progress=False).select(digits_pool, 20, seed=0).size == 20  # auto: the CPU
    with pytest.raises(ValueError, match=r"selector.device=cuda but this machine has 0 "
                                         r"visible CUDA GPU\(s\); use selector.device=auto"):
        NFPF(device="cuda").select(digits_pool, 20, seed=0)


def test_gpu_out_of_memory_names_the_batch_size(digits_pool, gpu_path_on_cpu, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(kernels, "kmeans", exhausted)
    with pytest.raises(GpuMemoryError, match=r"NFPF ran out of GPU memory \(CUDA out of "
                                             r"memory.*Lower selector.batch_size"):
        NFPF(progress=False).select(digits_pool, 20, seed=0)


def test_a_gpu_selection_is_cached_apart_from_the_cpu_one(tmp_path, monkeypatch):
    """The selection cache keys a selection made on a GPU by its device: a CPU run never
    reuses it (and the CPU key is the one of a selector without a device)."""
    from hydra import compose, initialize_config_dir

    import nfpf.evaluation.pipeline
    from nfpf.core.api import CONFIG_DIR
    from nfpf.evaluation.pipeline import RunNames, run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=single", "logger=none",
                                           "selector=coreset", "budget=20",
                                           f"paths.output_dir={tmp_path}"])
    names = RunNames("test", "digits", "raw", "coreset", "linear_svc")
    run(cfg, names, tmp_path / "cpu")
    monkeypatch.setattr(nfpf.evaluation.pipeline, "compute_device",
                        lambda device, key="device": torch.device("cuda"))
    monkeypatch.setattr(nfpf.core.device, "compute_device",
                        lambda device, key="device": torch.device("cpu"))
    run(cfg, names, tmp_path / "gpu")
    selections = sorted((tmp_path / "cache" / "selections").glob("*.npy"))
    assert len(selections) == 2  # not reused across devices
    np.testing.assert_array_equal(np.load(tmp_path / "cpu" / "indices.npy"),
                                  np.load(tmp_path / "gpu" / "indices.npy"))  # coreset: same
