"""Every GPU path on a real CUDA GPU (skipped without one, so CI without a GPU stays green).

Run on a GPU machine as ``python -m experiments.device.gpu_check`` (which also times the
benchmarks) or ``python -m pytest tests/test_gpu.py``. What it covers:

- the deep models (ResNet-18 classifier, SimCLR) under ``trainer=gpu`` in 32-true,
  bf16-mixed and 16-mixed precision, and CUDA inference after the fit;
- ``trainer=ddp`` (ddp_spawn, NCCL, synchronised BatchNorm) directly and through
  ``nfpf-run``, single runs and a ``-m`` sweep;
- NFPF and NFPF+ on CUDA against the CPU reference path;
- each baseline's GPU path against its CPU path;
- ``trainer=gpu`` for the Lightning classifiers and DUAL's and ALMS's autoencoders.
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
from sklearn.datasets import load_digits

from nfpf.core.api import make_selector
from nfpf.core.selection import Pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (tests/test_gpu.py runs on one)")

ROOT = Path(__file__).resolve().parents[1]
GPU = {"accelerator": "gpu", "devices": 1}
DDP = {"accelerator": "gpu", "devices": -1, "strategy": "ddp_spawn", "sync_batchnorm": True}


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    return images, data.target, Pool(features=(data.data / 16.0).astype(np.float32),
                                     images=images[:, 0], n_classes=10)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / len(a)


# ------------------------------------------------------------------ deep models, one GPU
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_resnet18_on_the_gpu(digits, precision):
    from nfpf.deep.resnet import ResNetClassifier

    x, y, _ = digits
    model = ResNetClassifier(epochs=4, batch_size=64, seed=0,
                             trainer={**GPU, "precision": precision})
    model.fit(x[:300], y[:300], eval_set=(x[1000:1300], y[1000:1300]))
    assert np.isfinite(model.step_losses_).all() and len(model.history_) == 4
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    predicted = model.predict(x[1000:1300])
    assert next(model.module_.parameters()).device.type == "cuda"  # CUDA inference
    assert model.last_accuracy_ == pytest.approx(np.mean(predicted == y[1000:1300]), abs=0.01)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_simclr_on_the_gpu(digits, precision):
    from nfpf.deep.simclr import SimCLRFeatures

    x, _, _ = digits
    space = SimCLRFeatures(epochs=2, batch_size=128, seed=0,
                           trainer={**GPU, "precision": precision})
    emb = space.fit_transform(x[:512])
    assert emb.shape == (512, 256) and np.isfinite(emb).all()
    assert np.isfinite(space.step_losses_).all()


# ---------------------------------------------------------------------- DDP on the GPUs
def test_resnet18_under_ddp_nccl(digits):
    from nfpf.deep.resnet import ResNetClassifier

    x, y, _ = digits
    model = ResNetClassifier(epochs=2, batch_size=64, seed=0, trainer=DDP)
    model.fit(x[:300], y[:300], eval_set=(x[1000:1101], y[1000:1101]))
    assert len(model.history_) == 2 and np.isfinite(model.step_losses_).all()
    predicted = model.predict(x[1000:1101])  # CUDA inference after the spawned fit
    assert next(model.module_.parameters()).device.type == "cuda"
    assert model.last_accuracy_ == pytest.approx(np.mean(predicted == y[1000:1101]),
                                                 abs=0.02)


def test_simclr_under_ddp_nccl(digits):
    from nfpf.deep.simclr import SimCLRFeatures

    x, _, _ = digits
    space = SimCLRFeatures(epochs=1, batch_size=128, seed=0, trainer=DDP)
    emb = space.fit_transform(x[:512])
    assert emb.shape == (512, 256) and np.isfinite(emb).all()
    assert len(space.epoch_losses_) == 1


def run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nfpf.cli.run", "logger=none", "dataset=digits",
           "classifier=resnet18", "classifier.epochs=2", "trainer=ddp",
           f"paths.output_dir={tmp_path}", *overrides]
    # keep the caller's path: on the GPU machine Hydra comes from there
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)


def test_nfpf_run_single_and_sweep_with_trainer_ddp(tmp_path):
    single = run_cli(tmp_path / "single", "experiment=single", "selector=kmeans",
                     "budget_per_class=10")
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run_cli(tmp_path / "sweep", "-m", "experiment=single", "selector=random,kmeans",
                    "budget_per_class=5")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    results = sorted((tmp_path / "single").rglob("result.json")) + \
        sorted((tmp_path / "sweep").rglob("result.json"))
    assert len(results) == 3
    for path in results:
        metrics = json.loads(path.read_text())["metrics"]
        assert metrics["accuracy"] == pytest.approx(metrics["history"][-1]["test_accuracy"])


# ------------------------------------------------------------------ NFPF on the GPU
@pytest.mark.parametrize("method", ["nfpf", "nfpf_plus"])
def test_nfpf_on_cuda_against_the_cpu(digits, method):
    _, _, pool = digits
    for seed in (0, 1):
        cpu = make_selector(method, device="cpu", progress=False).select(pool, 50, seed=seed)
        selector = make_selector(method, device="cuda", progress=False)
        gpu = selector.select(pool, 50, seed=seed)
        assert selector.info_["device"].startswith("cuda")
        assert len(set(gpu.tolist())) == 50
        # NFPF: same seeds (the GPU K-means draws scikit-learn's k-means++ numbers) and the
        # same RD arithmetic; NFPF+'s K = B balance clustering agrees less
        assert overlap(cpu, gpu) >= (0.6 if method == "nfpf" else 0.4)


def test_nfpf_random_seeding_is_identical_on_cuda(digits):
    _, _, pool = digits
    cpu = make_selector("nfpf", device="cpu", seeding="random", progress=False,
                        dtype="float64").select(pool, 40, seed=0)
    gpu = make_selector("nfpf", device="cuda", seeding="random", progress=False,
                        dtype="float64").select(pool, 40, seed=0)
    np.testing.assert_array_equal(cpu, gpu)


# ------------------------------------------------------------- baselines on the GPU
@pytest.mark.parametrize("method,least", [("kmeans", 0.6), ("coreset", 0.9),
                                          ("typiclust", 0.5), ("probcover", 0.8),
                                          ("usl", 0.5), ("ted", 0.9), ("maxherding", 0.9)])
def test_baseline_gpu_path_against_the_cpu(digits, method, least):
    _, _, pool = digits
    cpu = make_selector(method, device="cpu").select(pool, 50, seed=0)
    gpu = make_selector(method, device="cuda").select(pool, 50, seed=0)
    assert len(set(gpu.tolist())) == 50
    assert overlap(cpu, gpu) >= least


@pytest.mark.parametrize("method", ["dual", "alms"])
def test_gradient_baselines_train_on_the_gpu(digits, method):
    _, _, pool = digits
    small = {"pretrain_epochs": 5, "epochs": 5}
    cpu = make_selector(method, **small).select(pool, 50, seed=0)
    gpu = make_selector(method, trainer=GPU, **small).select(pool, 50, seed=0)
    assert len(set(gpu.tolist())) == 50
    assert overlap(cpu, gpu) >= 0.5


def test_lightning_classifier_on_the_gpu(digits):
    from nfpf.evaluation.classifiers import LightningClassifier

    _, y, pool = digits
    X = pool.features
    model = LightningClassifier(epochs=20, seed=0, trainer=GPU).fit(X[:1000], y[:1000])
    assert (model.predict(X[1000:]) == y[1000:]).mean() > 0.85
