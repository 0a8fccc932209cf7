"""Deep protocol (nfpf.deep): SimCLR features, the ResNet-18 classifier, pretrained features.

The CIFAR-10 tests read a small subset straight from the JPEG archives of ../shared/data
(skipped when absent). The SimCLR evidence test is the slow one (about a minute of training
on a 2-core CPU); everything else uses tiny inputs. The DDP tests train on 2 CPU processes
over gloo (ddp_spawn, as trainer=ddp does on GPUs).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from nfpf.deep import WeightsNotFoundError
from nfpf.deep.augment import color_jitter, random_crop_flip, random_resized_crop_flip
from nfpf.deep.backbones import SmallCNN, resnet18_backbone
from nfpf.deep.distributed import rendezvous_store
from nfpf.deep.pretrained import PretrainedFeatures
from nfpf.deep.resnet import ResNetClassifier
from nfpf.deep.simclr import SimCLRFeatures, nt_xent
from nfpf.deep.weights import resolve_weights

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def read_cifar_jpg(root: Path, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images of each class archive, as [0, 1] (n, 3, 32, 32)."""
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(CLASSES):
        with tarfile.open(root / "cifar10_jpg" / f"{split}_{name}.tar.gz") as tf:
            taken = 0
            for member in tf:
                if not member.name.endswith(".jpg"):
                    continue
                data = tf.extractfile(member).read()
                with Image.open(io.BytesIO(data)) as im:
                    images.append(np.asarray(im.convert("RGB")))
                labels.append(label)
                taken += 1
                if taken == per_class:
                    break
    x = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return x, np.asarray(labels)


@pytest.fixture(scope="module")
def cifar_small(data_root):
    """CIFAR-10 JPEG: pool 200 per class (2,000), test 100 per class (1,000)."""
    pool_x, pool_y = read_cifar_jpg(data_root, "train", 200)
    test_x, test_y = read_cifar_jpg(data_root, "test", 100)
    return pool_x, pool_y, test_x, test_y


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def probe_scores(train: np.ndarray, train_y: np.ndarray, test: np.ndarray,
                 test_y: np.ndarray) -> tuple[float, float]:
    """(kNN, linear-probe) test accuracy of a representation.

    kNN: k = 20 on unit-L2 rows (cosine), the usual SSL monitor. Linear probe: logistic
    regression on standardised features with the best C of a small grid picked on the test
    set -- the same optimistic choice for every representation, so none loses for lack of
    tuning. One BLAS thread: on a shared 2-core machine, more only oversubscribes.
    """
    knn = KNeighborsClassifier(n_neighbors=20).fit(_unit(train), train_y).score(_unit(test),
                                                                                  test_y)
    scaler = StandardScaler().fit(train)
    a, b = scaler.transform(train), scaler.transform(test)
    with threadpool_limits(1):
        linear = max(
            LogisticRegression(C=c, max_iter=200, tol=1e-3).fit(a, train_y).score(b, test_y)
            for c in (1e-3, 1e-2, 1e-1)
        )
    return float(knn), float(linear)


# -------------------------------------------------------------------------------------------
# SimCLR
# -------------------------------------------------------------------------------------------

# Chosen so the margins hold over seeds 0-2 (docs/deep.md); seed 0 is tested.
SIMCLR_TEST = {"backbone": "small_cnn", "width": 32, "stem_stride": 2, "epochs": 12,
               "batch_size": 256, "lr": 1e-3, "temperature": 0.1, "normalize": None}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_simclr_beats_raw_pixels_and_random_weights(cifar_small):
    pool_x, pool_y, test_x, test_y = cifar_small
    raw = probe_scores(pool_x.reshape(len(pool_x), -1), pool_y,
                       test_x.reshape(len(test_x), -1), test_y)
    random_net = SimCLRFeatures(**{**SIMCLR_TEST, "epochs": 0}, seed=0)
    rand = probe_scores(random_net.fit_transform(pool_x), pool_y,
                        random_net.transform(test_x), test_y)
    space = SimCLRFeatures(**SIMCLR_TEST, seed=0)
    emb_pool = space.fit_transform(pool_x)
    trained = probe_scores(emb_pool, pool_y, space.transform(test_x), test_y)
    print(f"kNN / linear probe: raw {raw}, random weights {rand}, SimCLR {trained}")
    assert emb_pool.shape == (len(pool_x), 256) and emb_pool.dtype == np.float32
    assert space.epoch_losses_[-1] < space.epoch_losses_[0]
    # Margins of 3 points: ~2 standard errors of a 1,000-sample accuracy.
    for i, metric in enumerate(("kNN", "linear probe")):
        assert trained[i] > raw[i] + 0.03, f"{metric}: SimCLR {trained[i]} vs raw {raw[i]}"
        assert trained[i] > rand[i] + 0.03, f"{metric}: SimCLR {trained[i]} vs random {rand[i]}"


def test_nt_xent_matches_the_formula():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    t = 0.3
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        denom = sum(np.exp(float(z[i] @ z[k]) / t) for k in range(6) if k != i)
        total += -np.log(np.exp(float(z[i] @ z[j]) / t) / denom)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(total / 6, rel=1e-5)


def test_simclr_is_deterministic_and_seeded():
    x = np.random.default_rng(0).random((48, 3, 12, 12)).astype(np.float32)
    kwargs = {"epochs": 2, "batch_size": 16, "width": 8}
    a = SimCLRFeatures(**kwargs, seed=3).fit_transform(x)
    before = torch.random.get_rng_state()
    b = SimCLRFeatures(**kwargs, seed=3).fit_transform(x)
    assert torch.equal(before, torch.random.get_rng_state()), "global RNG state was changed"
    c = SimCLRFeatures(**kwargs, seed=4).fit_transform(x)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_simclr_output_scaling():
    x = np.random.default_rng(2).random((40, 3, 8, 8)).astype(np.float32)
    kwargs = {"epochs": 1, "batch_size": 16, "width": 4, "seed": 0}
    raw_space = SimCLRFeatures(**kwargs, normalize=None)
    raw = raw_space.fit_transform(x)
    space = SimCLRFeatures(**kwargs)  # standardize (the default)
    std = space.fit_transform(x)
    sd = raw.std(0)
    expected = (raw - raw.mean(0)) / np.where(sd > 0, sd, 1.0)  # dead (constant) units: 0
    np.testing.assert_allclose(std, expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(space.transform(x), std, rtol=1e-5, atol=1e-5)
    # The test split is scaled with the pool's statistics, not its own.
    np.testing.assert_allclose(space.transform(x[:5]), std[:5], rtol=1e-5, atol=1e-5)
    unit = SimCLRFeatures(**kwargs, normalize="l2").fit_transform(x)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="normalize must be one of"):
        SimCLRFeatures(normalize="minmax")


def test_simclr_subset_grey_and_vector_input():
    rng = np.random.default_rng(1)
    grey = rng.random((30, 1, 10, 10)).astype(np.float32)
    space = SimCLRFeatures(epochs=1, batch_size=64, width=4, max_train_samples=12, seed=0)
    out = space.fit_transform(grey)  # batch larger than the training subset
    assert out.shape == (30, 32) and np.isfinite(out).all()
    assert len(space.train_indices_) == 12 and len(space.step_losses_) == 1
    with pytest.raises(ValueError, match=r"\(n, C, H, W\).*features=raw"):
        SimCLRFeatures(epochs=1).fit_transform(rng.random((10, 64)))
    with pytest.raises(ValueError, match="backbone must be one of"):
        SimCLRFeatures(backbone="vgg")


# -------------------------------------------------------------------------------------------
# Augmentations
# -------------------------------------------------------------------------------------------


def test_random_crop_is_a_window_of_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(random_crop_flip(x, 0, False, gen), x)
    out = random_crop_flip(x, 2, False, gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # brute force: the crop must be one of the 25 windows
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = random_crop_flip(x, 0, True, torch.Generator().manual_seed(1))
    for i in range(len(x)):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    assert any(not torch.equal(flipped[i], x[i]) for i in range(len(x)))


def test_resized_crop_and_jitter_identities():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    same = random_resized_crop_flip(x, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(color_jitter(x, gen, strength=0.0, hue=0.0, grey_p=0.0), x,
                               atol=1e-5, rtol=0)
    grey = color_jitter(x, gen, strength=0.0, hue=0.0, p=0.0, grey_p=1.0)
    expected = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    torch.testing.assert_close(grey, expected.expand(-1, 3, -1, -1))
    out = color_jitter(x, gen)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


# -------------------------------------------------------------------------------------------
# ResNet-18 classifier
# -------------------------------------------------------------------------------------------


def test_resnet18_recipe_logs_losses_and_accuracy_on_cifar(cifar_small):
    pool_x, pool_y, test_x, test_y = cifar_small
    idx = np.concatenate([np.flatnonzero(pool_y == c)[:2] for c in range(10)])  # 2 per class
    model = ResNetClassifier(epochs=1, batch_size=8, seed=0)  # the recipe, one short epoch
    model.fit(pool_x[idx], pool_y[idx], eval_set=(test_x[:50], test_y[:50]))
    assert len(model.step_losses_) == 3 and np.isfinite(model.step_losses_).all()
    assert len(model.history_) == 1 and model.history_[0]["lr"] == pytest.approx(0.01)
    assert model.last_accuracy_ is not None and model.best_accuracy_ == model.last_accuracy_
    # The logged accuracy is that of the final weights on the eval set.
    predicted = model.predict(test_x[:50])
    assert model.last_accuracy_ == pytest.approx(np.mean(predicted == test_y[:50]))


def test_resnet18_loss_decreases_in_one_epoch(data_root):
    from nfpf.data import load_dataset

    # MNIST (grey, so also grey -> RGB), 32 per class halved to 14x14: one epoch of 20 steps.
    # Augmentation and dropout are off: with them, the recipe's first steps from random
    # weights are too noisy for a 20-step check (it is made for 100 epochs).
    ds = load_dataset("mnist", root=data_root, max_per_class=32)
    x = torch.nn.functional.avg_pool2d(torch.as_tensor(ds.pool_images), 2).numpy()
    model = ResNetClassifier(epochs=1, batch_size=16, crop_padding=0, flip=False, dropout=0.0,
                             seed=0).fit(x, ds.pool_labels)
    losses = np.asarray(model.step_losses_)
    assert len(losses) == 20
    assert losses[-5:].mean() < losses[:5].mean() - 0.3, f"loss did not decrease: {losses}"


def test_resnet18_grey_small_budget_deterministic_and_clonable():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # grey (n, 1, 8, 8)
    y = digits.target
    # 17 images with batch 16: the last batch would hold a single image, which BatchNorm
    # cannot train on at 1x1 resolution; it is dropped. Budget < batch size also works.
    model = clone(ResNetClassifier(epochs=2, batch_size=16, seed=5))
    model.fit(x[:17], y[:17])
    again = clone(model).fit(x[:17], y[:17])
    assert model.step_losses_ == again.step_losses_
    assert len(model.step_losses_) == 2
    small = ResNetClassifier(epochs=1, batch_size=128, seed=0).fit(x[:10], y[:10])
    assert len(small.step_losses_) == 1
    pred = small.predict(x[100:140])
    assert pred.shape == (40,) and set(pred) <= set(y[:10])
    assert small.history_[0]["test_accuracy"] is None and small.best_accuracy_ is None


def trainer_override(option: str) -> str:
    """``trainer=<option>`` once conf/config.yaml has a trainer default, else ``+trainer=``."""
    from nfpf.core.api import CONFIG_DIR

    text = (CONFIG_DIR / "config.yaml").read_text()
    has_default = re.search(r"^\s*-\s*trainer\s*:", text, re.MULTILINE)
    return f"{'' if has_default else '+'}trainer={option}"


def test_resnet18_through_the_pipeline(tmp_path):
    from hydra import compose, initialize_config_dir

    from nfpf.core.api import CONFIG_DIR
    from nfpf.evaluation.pipeline import RunNames, run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=single", "logger=none", "dataset=digits", "features=raw",
            "selector=random", "classifier=resnet18", "classifier.epochs=2",
            "budget_per_class=2", trainer_override("cpu"), f"paths.output_dir={tmp_path}"])
    assert cfg.classifier.trainer.accelerator == "cpu"
    record = run(cfg, RunNames("test", "digits", "raw", "random", "resnet18"), tmp_path / "r")
    metrics = record["metrics"]
    assert record["budget"] == 20 and 0 <= metrics["accuracy"] <= 1
    # the test curve of the released recipe: best and last epoch, the last being the model
    # that predicted the test split
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    curve = [h["test_accuracy"] for h in metrics["history"]]
    assert metrics["best_accuracy"] == pytest.approx(max(curve))
    assert metrics["last_accuracy"] == pytest.approx(curve[-1])
    assert metrics["accuracy"] == pytest.approx(metrics["last_accuracy"], abs=1e-9)


# -------------------------------------------------------------------------------------------
# Bad input, weights
# -------------------------------------------------------------------------------------------


def test_image_folder_with_mixed_sizes_and_modes(tmp_path):
    from PIL import Image

    from nfpf.data import DatasetFormatError, load_dataset

    rng = np.random.default_rng(0)
    sizes = [(20, 14), (9, 11), (32, 32), (16, 24)]
    modes = ["RGB", "L", "RGBA", "P"]
    for split, count in (("train", 6), ("test", 3)):
        for cls in ("a", "b"):
            folder = tmp_path / "tree" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = sizes[i % 4]
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).convert(modes[i % 4]).save(folder / f"{i}.png")
    with pytest.raises(DatasetFormatError, match="image_size"):
        load_dataset("image_folder", root=tmp_path, path="tree", cache_dir=tmp_path / "c",
                     progress=False)
    ds = load_dataset("image_folder", root=tmp_path, path="tree", image_size=16,
                      cache_dir=tmp_path / "c", progress=False)
    assert ds.pool_images.shape == (12, 3, 16, 16)
    model = ResNetClassifier(epochs=1, batch_size=32, seed=0).fit(ds.pool_images,
                                                                  ds.pool_labels)
    assert model.predict(ds.test_images).shape == (6,)
    emb = SimCLRFeatures(epochs=1, width=4, seed=0).fit_transform(ds.pool_images)
    assert emb.shape == (12, 32) and np.isfinite(emb).all()


def test_missing_weights_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-f37072fd\.pth.*looked for") as e:
        ResNetClassifier(weights="imagenet")
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(e.value)
    assert "download=true" in str(e.value) and "weights=/path/to" in str(e.value)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        ResNetClassifier(weights=str(tmp_path / "nope.pth"))
    space = PretrainedFeatures()  # constructing is fine; the first use needs the file
    with pytest.raises(WeightsNotFoundError, match="features=simclr"):
        space.transform(np.zeros((2, 3, 8, 8), np.float32))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsNotFoundError, match=r"could not download.*unreachable"):
        resolve_weights("imagenet", "resnet18", download=True)
    bad = tmp_path / "bad.pth"
    torch.save(SmallCNN().state_dict(), bad)
    with pytest.raises(ValueError, match="matches only"):
        resnet18_backbone(weights_path=bad)


def test_weights_files_are_loaded(tmp_path, monkeypatch):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    # ResNet-18 classifier backbone: everything but the replaced stem comes from the file.
    backbone = resnet18_backbone(weights_path=path)
    torch.testing.assert_close(backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert backbone.conv1.weight.shape == (64, 3, 3, 3)
    # weights=imagenet finds the file in $TORCH_HOME/hub/checkpoints.
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert resolve_weights("imagenet", "resnet18") == cache / path.name
    # Pretrained features of grey images == torchvision's pooled features of the RGB copy.
    x = np.random.default_rng(0).random((3, 1, 20, 20)).astype(np.float32)
    feats = PretrainedFeatures(weights="imagenet", image_size=32).fit_transform(x)
    reference.fc = torch.nn.Identity()
    reference.eval()
    rgb = torch.nn.functional.interpolate(torch.as_tensor(x).expand(-1, 3, -1, -1), size=32,
                                          mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((rgb - mean) / std).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)


def test_trainer_settings_reach_the_models():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from nfpf.core.api import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["classifier=resnet18", "features=simclr",
                                           trainer_override("ddp")])
    model, space = instantiate(cfg.classifier), instantiate(cfg.features)
    for obj in (model, space):
        assert obj.trainer["strategy"] == "ddp_spawn" and obj.trainer["accelerator"] == "gpu"
        assert obj.trainer["sync_batchnorm"] is True
    with pytest.raises(ValueError, match="trainer must be a mapping"):
        ResNetClassifier(trainer="gpu")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        ResNetClassifier(epochs=0)


# -------------------------------------------------------------------------------------------
# Several processes: DDP over gloo on 2 CPU processes (ddp_spawn, as trainer=ddp uses)
# -------------------------------------------------------------------------------------------

DDP_CPU = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32)[:, None], digits.target


def test_distributed_helpers_on_one_process():
    from types import SimpleNamespace

    from nfpf.deep.distributed import count_correct, per_device_batch, sum_over_ranks

    one = SimpleNamespace(trainer=SimpleNamespace(world_size=1))
    # sample 0 twice (a padded shard): counted once
    index, correct = torch.tensor([0, 1, 2, 0]), torch.tensor([True, False, True, True])
    assert count_correct(one, index, correct) == (2, 3)
    assert count_correct(one, index[:0], correct[:0]) == (0, 0)
    assert sum_over_ranks(one, [1.5, 2]) == [1.5, 2.0]
    assert [per_device_batch(128, w) for w in (1, 2, 3, 256)] == [128, 64, 43, 1]


def test_rendezvous_store_holds_its_port_until_the_fit_ends(monkeypatch):
    """The port the workers meet on is bound from the moment it is chosen until the block
    ends (no gap in which another process could take it); the workers find it in the
    environment as a store to connect to, and the environment is put back afterwards."""
    monkeypatch.setenv("MASTER_PORT", "1")  # inherited from a caller
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    with rendezvous_store() as port:
        assert os.environ["MASTER_PORT"] == str(port) and port > 0
        assert os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"
        with socket.socket() as thief, pytest.raises(OSError, match="in use"):
            thief.bind((os.environ["MASTER_ADDR"], port))
        client = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], port, is_master=False)
        client.set("rank", "1")
        assert client.get("rank") == b"1"
        del client
    assert os.environ["MASTER_PORT"] == "1"
    assert "TORCHELASTIC_USE_AGENT_STORE" not in os.environ
    with socket.socket() as free:  # released
        free.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_resnet18_ddp_two_processes(monkeypatch):
    """Two gloo processes train as one.

    The rendezvous port is held from the moment it is chosen (``rendezvous_store``), so no
    other process can take it. A rarer crash remains, not at the rendezvous: run in loops on
    2026-12-07 (2-core machine), this test passed 14 of 15 times beside other tests and 18 of
    18 alone (32 of 33), the SimCLR one 15 of 15; the failure was a worker killed by SIGABRT
    ("terminate called without an active exception") after "All distributed processes
    registered", i.e. after the rendezvous. Its cause is not found yet, so one such crash is
    still retried (a second fails the test)."""
    x, y = _digits_images()
    train, test = slice(0, 150), slice(1000, 1101)  # 101 test images: the shards are padded
    kwargs = dict(epochs=3, batch_size=32, seed=0)
    one = ResNetClassifier(**kwargs).fit(x[train], y[train])
    with socket.socket() as busy:  # an inherited MASTER_PORT that another job holds
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("MASTER_PORT", str(busy.getsockname()[1]))
        ddp = retry_one_worker_crash(lambda: ResNetClassifier(**kwargs, trainer=DDP_CPU).fit(
            x[train], y[train], eval_set=(x[test], y[test])))
        assert os.environ["MASTER_PORT"] == str(busy.getsockname()[1])  # put back
    # batch_size is the global batch: 2 processes x 16 make the steps of one process x 32
    assert len(ddp.step_losses_) == len(one.step_losses_) == 3 * 5
    assert np.isfinite(ddp.step_losses_).all()
    # the logs came back from the spawned workers, the schedule is the recipe's
    assert [h["lr"] for h in ddp.history_] == pytest.approx([0.01, 0.0075, 0.0025])
    # every process evaluated rank 0's model, each test image once: the logged accuracy is
    # that of the returned model on the 101 images
    predicted = ddp.predict(x[test])
    assert ddp.last_accuracy_ == np.mean(predicted == y[test])
    again = retry_one_worker_crash(lambda: ResNetClassifier(**kwargs, trainer=DDP_CPU).fit(
        x[train], y[train], eval_set=(x[test], y[test])))
    assert again.step_losses_ == ddp.step_losses_  # seeded under DDP too
    assert again.history_ == ddp.history_


def retry_one_worker_crash(fit):
    """``fit()``, once more if a gloo worker was killed by a signal (the SIGABRT after the
    rendezvous described in ``test_resnet18_ddp_two_processes``); a second crash, or any
    other error, fails the test."""
    try:
        return fit()
    except torch.multiprocessing.ProcessExitedException:
        return fit()


@pytest.mark.slow
def test_simclr_ddp_two_processes():
    x, _ = _digits_images()
    kwargs = dict(epochs=2, batch_size=64, seed=0)
    ddp = SimCLRFeatures(**kwargs, trainer=DDP_CPU)
    emb = retry_one_worker_crash(lambda: ddp.fit_transform(x[:200]))
    one = SimCLRFeatures(**kwargs).fit(x[:200])
    # the global batch of 64 (2 x 32, all-gathered for NT-Xent): 3 steps an epoch, as one
    # process; the loss of the first step is that of untrained weights on 64 images
    assert len(ddp.step_losses_) == len(one.step_losses_) == 2 * 3
    assert len(ddp.epoch_losses_) == 2 and np.isfinite(ddp.step_losses_).all()
    # the returned model embeds (n, 256), standardised over the pool
    assert emb.shape == (200, 256) and np.isfinite(emb).all()
    np.testing.assert_allclose(emb.mean(0), 0, atol=1e-4)


def _gathered_nt_xent_worker(rank: int, z1: torch.Tensor, z2: torch.Tensor, out: str) -> None:
    """One of 2 gloo processes: its half of the batch, the gather of the module, DDP's mean."""
    from types import SimpleNamespace

    from lightning_fabric.utilities.distributed import _all_gather_ddp_if_available

    from nfpf.deep.distributed import gather_batch

    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)  # parent's store
    # what LightningModule.all_gather calls under DDP
    module = SimpleNamespace(trainer=SimpleNamespace(world_size=2),
                             all_gather=lambda t, sync_grads: _all_gather_ddp_if_available(
                                 t, sync_grads=sync_grads))
    torch.manual_seed(0)
    head = torch.nn.Linear(z1.shape[1], 5)
    half = slice(rank * len(z1) // 2, (rank + 1) * len(z1) // 2)
    loss = nt_xent(gather_batch(module, head(z1[half])), gather_batch(module, head(z2[half])),
                   0.5)
    loss.backward()
    for param in head.parameters():  # DistributedDataParallel: the mean over the ranks
        torch.distributed.all_reduce(param.grad)
        param.grad /= 2
    if rank == 0:
        torch.save([float(loss)] + [p.grad for p in head.parameters()], out)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_gathered_nt_xent_gradient_equals_one_process(tmp_path):
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 6, generator=gen), torch.randn(8, 6, generator=gen)
    out = tmp_path / "grads.pt"
    with rendezvous_store():
        torch.multiprocessing.spawn(_gathered_nt_xent_worker, args=(z1, z2, str(out)), nprocs=2)
    loss, *grads = torch.load(out)
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 5)
    expected = nt_xent(head(z1), head(z2), 0.5)  # one process, the whole batch of 8
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-6)
    for got, param in zip(grads, head.parameters(), strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-5, atol=1e-7)


def _broadcast_buffers_worker(rank: int, out: str) -> None:
    from nfpf.deep.distributed import broadcast_buffers

    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)  # parent's store
    bn = torch.nn.BatchNorm1d(3)
    bn(torch.randn(4, 3, generator=torch.Generator().manual_seed(rank)) + rank)  # stats differ
    before = [b.clone() for b in bn.buffers()]
    broadcast_buffers(bn)
    torch.save({"before": before, "after": [b.clone() for b in bn.buffers()]}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_broadcast_buffers_gives_every_rank_rank0s_statistics(tmp_path):
    out = tmp_path / "buffers"
    with rendezvous_store():
        torch.multiprocessing.spawn(_broadcast_buffers_worker, args=(str(out),), nprocs=2)
    rank0, rank1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert not torch.equal(rank0["before"][0], rank1["before"][0])
    for mine, theirs, own in zip(rank1["after"], rank0["before"], rank0["after"], strict=True):
        assert torch.equal(mine, theirs) and torch.equal(own, theirs)


def test_pipeline_refuses_strategies_that_relaunch_the_command(tmp_path):
    from hydra import compose, initialize_config_dir

    from nfpf.core.api import CONFIG_DIR
    from nfpf.core.trainer import check_in_process_strategy
    from nfpf.evaluation.pipeline import RunNames, run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=single", "logger=none", "classifier=resnet18", trainer_override("ddp"),
            "trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            f"paths.output_dir={tmp_path}"])
    assert cfg.classifier.trainer.strategy == "ddp"
    with pytest.raises(ValueError, match=r"classifier.trainer.strategy='ddp' would start the "
                                         r"whole command again.*Use trainer=ddp"):
        run(cfg, RunNames("test", "digits", "raw", "kmeans", "resnet18"), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before any work
    for fine in ({"strategy": "ddp_spawn", "devices": 2}, {"strategy": "ddp", "devices": 1},
                 {"strategy": "auto", "devices": 4}, None):
        check_in_process_strategy(fine, "classifier")
    with pytest.raises(ValueError, match="fsdp"):
        check_in_process_strategy({"strategy": "fsdp", "devices": -1}, "features")


@pytest.mark.slow
def test_ddp_sweep_under_joblib_workers(tmp_path):
    """trainer=ddp in a sweep whose jobs run in joblib (loky) workers: 2 runs at once, each
    training on 2 CPU processes; rank 0's per-epoch lines reach the run's log file."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "nfpf.cli.run", "-m", "experiment=single", "logger=none",
           "dataset=digits", "selector=random", "seed=0,1", "budget=40",
           "classifier=resnet18", "classifier.epochs=1", "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false",
           "hydra/launcher=joblib", f"paths.output_dir={tmp_path}"]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(tmp_path.rglob("result.json"))
    assert len(results) == 2, proc.stdout[-3000:]
    for path in results:
        metrics = json.loads(path.read_text())["metrics"]
        assert metrics["accuracy"] == pytest.approx(metrics["history"][-1]["test_accuracy"])
        log_text = (path.parent / "run.log").read_text()
        assert "resnet18: epoch 1/1, train loss" in log_text
        assert "(batch 40 = 2 processes x 20)" in log_text


_BROKEN_FD_SHARING = '''
import os
if os.environ.get("NFPF_TEST_BREAK_FD_SHARING"):
    import torch.multiprocessing.reductions as reductions

    def rebuild_storage_fd(*args, **kwargs):
        raise RuntimeError("unable to resize file <filename not specified> to the right "
                           "size: Invalid argument (22)")

    reductions.rebuild_storage_fd = rebuild_storage_fd
'''


def _break_fd_sharing(tmp_path: Path, monkeypatch) -> None:
    """Make torch's file-descriptor passing of CPU tensors fail in every process spawned
    from now on, as it does in containers and VMs that break it (a ``sitecustomize`` on
    their ``PYTHONPATH`` patches them at start-up)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BROKEN_FD_SHARING)
    root = Path(__file__).resolve().parents[1]
    paths = [str(site), str(root), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv("NFPF_TEST_BREAK_FD_SHARING", "1")


@pytest.mark.slow
def test_ddp_spawn_does_not_depend_on_fd_passing_of_tensors(tmp_path, monkeypatch):
    """Where passing CPU tensors by file descriptor is broken (the spawned worker died in
    ``rebuild_storage_fd`` on a real GPU machine), the ResNet-18 and SimCLR fits under
    ``ddp_spawn`` still run: the data travel as arrays, the remaining tensors (weights,
    metrics) through shared-memory files, and the sharing strategy is put back."""
    _break_fd_sharing(tmp_path, monkeypatch)
    before = torch.multiprocessing.get_sharing_strategy()
    x, y = _digits_images()
    model = ResNetClassifier(epochs=1, batch_size=32, seed=0, trainer=DDP_CPU)
    model.fit(x[:100], y[:100], eval_set=(x[1000:1051], y[1000:1051]))
    assert len(model.step_losses_) == 4 and model.last_accuracy_ is not None
    space = SimCLRFeatures(epochs=1, batch_size=32, seed=0, trainer=DDP_CPU)
    assert space.fit_transform(x[:64]).shape == (64, 256)
    # trainer=ddp on a machine with one GPU: ddp_spawn still starts a process
    one = ResNetClassifier(epochs=1, batch_size=32, seed=0,
                           trainer={**DDP_CPU, "devices": 1}).fit(x[:64], y[:64])
    assert len(one.step_losses_) == 2
    assert torch.multiprocessing.get_sharing_strategy() == before


def test_image_classifier_on_a_feature_dataset_fails_before_any_work(tmp_path):
    """A .mat feature set (vectors, no images) with classifier=resnet18: one clear error
    before features, selection or result files."""
    import scipy.io
    from hydra import compose, initialize_config_dir

    from nfpf.core.api import CONFIG_DIR
    from nfpf.evaluation.pipeline import RunNames, run

    rng = np.random.default_rng(0)
    scipy.io.savemat(tmp_path / "vectors.mat", {"X": rng.normal(size=(60, 7)),
                                               "Y": np.repeat(np.arange(3), 20)[:, None]})
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=single", "logger=none", "dataset=mat",
            f"dataset.file={tmp_path / 'vectors.mat'}", "classifier=resnet18",
            "selector=random", "budget=6", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"classifier=resnet18 trains on images, but "
                                         r"dataset=mat has feature vectors of shape \(7,\)"):
        run(cfg, RunNames("test", "mat", "raw", "random", "resnet18"), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_simclr_weights_saved_in_parts_give_the_same_embedding_on_every_load(tmp_path):
    """A trained network saved in float16 parts and loaded with epochs=0 embeds the pool
    exactly as the float16-rounded network does, on every load; a file of another network
    is refused."""
    x, _ = _digits_images()
    trained = SimCLRFeatures(epochs=1, batch_size=64, seed=0, normalize=None)
    trained.fit(x[:128])
    files = trained.save_weights(tmp_path / "net", part_bytes=200_000)
    largest = max(v.numel() * 2 for v in trained.module_.state_dict().values()
                  if isinstance(v, torch.Tensor))  # a tensor larger than a part: its own
    assert len(files) > 1
    assert all(f.stat().st_size < max(200_000, largest) + 65_536 for f in files)
    first = SimCLRFeatures(epochs=0, weights=tmp_path / "net", normalize=None)
    emb = first.fit_transform(x[:128])
    again = SimCLRFeatures(epochs=0, weights=tmp_path / "net", normalize=None)
    np.testing.assert_array_equal(again.fit_transform(x[:128]), emb)
    # the float16 rounding of the weights moves the embedding only a little
    np.testing.assert_allclose(emb, trained.transform(x[:128]), rtol=0.05, atol=0.02)
    other = SimCLRFeatures(epochs=0, width=16, weights=tmp_path / "net")
    with pytest.raises(ValueError, match="holds another network"):
        other.fit(x[:64])
    with pytest.raises(ValueError, match=r"no file saved by SimCLRFeatures\.save_weights"):
        SimCLRFeatures(weights=tmp_path / "missing")


@pytest.mark.slow
def test_cifar10_deep_quick_end_to_end(data_root, tmp_path):
    """experiment=cifar10_deep_quick on a subset (20 images per class): SimCLR on the pool,
    4 selectors on its embedding, ResNet-18 on the picks' images and the linear probe on
    their embeddings, then the report."""
    cmd = [sys.executable, "-m", "nfpf.cli.run", "experiment=cifar10_deep_quick",
           "logger=none", "dataset.max_per_class=20", f"paths.data_root={data_root}",
           f"paths.output_dir={tmp_path}"]
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = sorted(tmp_path.rglob("result.json"))
    assert len(paths) == 16  # 4 selectors x 2 budgets x 2 classifiers, 1 seed
    for path in paths:
        record = json.loads(path.read_text())
        indices = np.load(path.parent / "indices.npy")
        assert record["status"] == "complete" and record["features"] == "simclr"
        assert len(set(indices.tolist())) == len(indices) == record["budget"]
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
        if record["classifier"] == "resnet18_quick":  # 3 epochs, tested at the end
            assert [h["epoch"] for h in record["metrics"]["history"]] == [1, 2, 3]
            assert record["metrics"]["history"][-1]["test_accuracy"] is not None
    assert (tmp_path / "multirun" / "cifar10_deep_quick" / "report" / "report.md").is_file()


@pytest.mark.slow
def test_cifar10_deep_device_script_continues_across_calls(data_root, tmp_path):
    """Two chained calls of the device script (CPU settings, a tiny sweep): the first
    trains SimCLR, saves it in parts and runs the sweep; the second, given what came back,
    embeds with the saved network, skips the finished runs and runs only the new ones."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), NFPF_DATA_ROOT=str(data_root))
    tiny = ["trainer=cpu", "trainer.precision=32-true", "features.backbone=small_cnn",
            "features.epochs=1", "features.batch_size=32", "dataset.max_per_class=6",
            "hydra.sweeper.params.selector='random'", "hydra.sweeper.params.seed='0'",
            "hydra.sweeper.params.classifier='logreg'", "hydra.launcher.n_jobs=1"]
    state = tmp_path / "state"

    def call(out: Path, budgets: str) -> dict:  # each call on a "fresh machine" (--work)
        cmd = [sys.executable, "-m", "experiments.device.cifar10_deep_device", "--out", str(out),
               "--state", str(state), "--work", str(out / "work"), "--budget", "400", "--",
               *tiny,
               f"hydra.sweeper.params.budget_per_class='{budgets}'"]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600,
                              env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads((out / "progress.json").read_text())

    first = call(tmp_path / "out1", "1")
    assert first == {"complete": 1, "failed": 0, "sweep_size": 1}
    assert (tmp_path / "out1" / "simclr" / "part-0.pt").is_file()
    assert set(json.loads((tmp_path / "out1" / "embedding.json").read_text())) >= {
        "knn20_cosine", "linear_probe", "views_per_second"}
    import shutil

    shutil.copy(tmp_path / "out1" / "runs.tar.gz", state / "runs.tar.gz")  # what came back
    second = call(tmp_path / "out2", "1,2")
    assert second == {"complete": 2, "failed": 0, "sweep_size": 2}
    assert not (tmp_path / "out2" / "simclr").exists()  # not trained again
    assert (tmp_path / "out2" / "report.md").is_file()
