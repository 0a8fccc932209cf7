"""The ``trainer`` group governs every Lightning fit, and settings that cannot run here are
refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from nfpf.core.api import CONFIG_DIR
from nfpf.core.trainer import check_trainer, device_count, make_trainer

ROOT = Path(__file__).resolve().parents[1]


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("option", ["cpu", "gpu", "ddp"])
def test_trainer_group_reaches_every_lightning_model(option):
    """Every model that Lightning trains reads the same ``trainer`` settings."""
    expected = dict(compose_with(f"trainer={option}").trainer)
    models = {
        "classifier": ["lightning_linear", "lightning_mlp", "resnet18"],
        "selector": ["dual", "alms"],
        "features": ["simclr"],
    }
    for group, names in models.items():
        for name in names:
            cfg = compose_with(f"trainer={option}", f"{group}={name}")
            assert dict(cfg[group].trainer) == expected, (group, name)
            if group == "selector" and option == "ddp":
                # Hydra wraps the constructor's ValueError
                with pytest.raises(Exception, match=r"trains on one device.*trainer=gpu"):
                    instantiate(cfg[group])
            else:
                assert dict(instantiate(cfg[group]).trainer) == expected


def test_make_trainer_builds_the_configured_trainer():
    trainer = make_trainer({"accelerator": "cpu", "devices": 1, "precision": "bf16-mixed"},
                           max_epochs=3, progress=False, deterministic=True)
    assert trainer.max_epochs == 3 and trainer.precision == "bf16-mixed"
    assert trainer.logger is None and not trainer.checkpoint_callbacks
    assert [device_count(d) for d in ({"devices": 2}, {"devices": [0, 1, 2]},
                                      {"devices": "0,1"}, {"devices": -1}, None)] == \
        [2, 3, 2, None, 1]


def test_lightning_classifier_trains_through_the_trainer_group():
    """lightning_linear under trainer=cpu settings: the training loss falls and the head
    separates two well-apart blobs (a closed-form-checkable case)."""
    from nfpf.evaluation.classifiers import LightningClassifier

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-3, 1, (40, 5)), rng.normal(3, 1, (40, 5))]).astype(np.float32)
    y = np.repeat([0, 1], 40)
    model = LightningClassifier(epochs=30, batch_size=16, seed=0,
                                trainer={"accelerator": "cpu", "devices": 1})
    model.fit(X, y)
    assert model.module_.train_losses[-1] < model.module_.train_losses[0]
    assert (model.predict(X) == y).mean() == 1.0
    again = LightningClassifier(epochs=30, batch_size=16, seed=0).fit(X, y)
    assert again.module_.train_losses == model.module_.train_losses  # same default


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_gpu_trainer_without_a_gpu_is_refused_with_the_cpu_settings():
    with pytest.raises(ValueError, match=r"classifier.trainer.accelerator=gpu but this machine "
                                         r"has no CUDA GPU; use trainer.accelerator=cpu "
                                         r"trainer.devices=2"):
        check_trainer(dict(compose_with("trainer=ddp").trainer), "classifier")
    with pytest.raises(ValueError, match="no CUDA GPU; use trainer=cpu"):
        check_trainer(dict(compose_with("trainer=gpu").trainer), "features")
    check_trainer(dict(compose_with("trainer=cpu").trainer), "classifier")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_nfpf_run_refuses_trainer_ddp_without_a_gpu_before_any_work(tmp_path):
    cmd = [sys.executable, "-m", "nfpf.cli.run", "experiment=single", "logger=none",
           "dataset=digits", "selector=random", "budget=20", "classifier=resnet18",
           "trainer=ddp", f"paths.output_dir={tmp_path}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "trainer.accelerator=cpu trainer.devices=2" in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("indices.npy"))


def test_library_api_builds_lightning_selectors_without_a_run_config():
    """Outside nfpf-run the selector files' ``${oc.select:trainer,null}`` means no trainer
    group: the default CPU Trainer, or the mapping passed as an option."""
    import nfpf
    from nfpf.core.api import load_selector_config, make_selector

    assert load_selector_config("dual").trainer is None
    gpu = {"accelerator": "gpu", "devices": 1}
    assert make_selector("alms", trainer=gpu).trainer == gpu
    X = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    picks = nfpf.select(X, 5, method="dual", pretrain_epochs=1, epochs=2)
    assert len(set(picks.tolist())) == 5


def test_gpu_out_of_memory_in_a_fit_names_the_batch_size(monkeypatch):
    """A CUDA out-of-memory error while a deep model trains comes back as one message that
    names the config key bounding the memory."""
    import nfpf.deep.resnet
    from nfpf.core.device import GpuMemoryError
    from nfpf.deep.resnet import ResNetClassifier

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(nfpf.deep.resnet, "random_crop_flip", exhausted)
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    with pytest.raises(GpuMemoryError, match=r"ResNetModule ran out of GPU memory .*Lower "
                                             r"classifier.batch_size"):
        ResNetClassifier(epochs=1, batch_size=4).fit(x, np.arange(8) % 2)


def test_lightning_fits_are_quiet_on_a_slurm_node(monkeypatch, recwarn):
    """Where ``srun`` is on the PATH Lightning hints at it for every Trainer; nfpf's sweeps
    reach SLURM through their launcher, so the hint is noise and stays muted."""
    import warnings

    from nfpf.core.trainer import quiet_lightning

    with quiet_lightning():
        warnings.warn("The `srun` command is available on your system but is not used. "
                      "HINT: ...", UserWarning, stacklevel=1)
    assert not [w for w in recwarn if "srun" in str(w.message)]
