"""Dataset loaders: shapes and class counts of ../shared/data/README.md, pixel orientation,
labels 0..K-1, the archive cache, configs, and the errors for bad input."""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from omegaconf import OmegaConf
from PIL import Image
from sklearn.datasets import load_digits

import nfpf.data.image_folder as image_folder_module
from nfpf.data import (
    DATA_ROOT_ENV,
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    available_datasets,
    load_dataset,
)
from nfpf.data.base import _LOADERS
from nfpf.data.common import subsample_per_class
from nfpf.data.image_folder import list_image_tree, load_image_folder, unpack_archives
from nfpf.data.mat import MAT_SETS

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"


@pytest.fixture(autouse=True)
def _no_root_override(monkeypatch):
    """An NFPF_DATA_ROOT of the developer's shell must not redirect these tests."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def _check_common(ds: Dataset, n_classes: int, image_shape: tuple[int, ...]) -> None:
    assert isinstance(ds, Dataset)
    assert ds.image_shape == image_shape
    assert ds.n_classes == len(ds.class_names) == n_classes
    for images, labels in ((ds.pool_images, ds.pool_labels), (ds.test_images, ds.test_labels)):
        assert images.dtype == np.float32 and labels.dtype == np.int64
        assert images.shape[1:] == image_shape and len(images) == len(labels)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert labels.min() >= 0 and labels.max() < n_classes
    assert set(np.unique(ds.pool_labels)) == set(range(n_classes))  # labels are 0..K-1


# --------------------------------------------------------------------------------------------
# Orientation checks (independent references: symmetry of faces, sklearn's digits, MNIST's "1")
# --------------------------------------------------------------------------------------------


def _lr_ud_ratio(images: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of (left-right asymmetry / up-down asymmetry) of the class mean.

    An upright face (or an object photographed on a turntable) is close to mirror symmetric
    left-right, not up-down: ratio < 1. A transposed image gives the inverse.
    """
    ratios = []
    for c in np.unique(labels):
        m = images[labels == c].mean(axis=0)
        ratios.append(np.abs(m - m[:, ::-1]).mean() / np.abs(m - m[::-1, :]).mean())
    return float(np.mean(ratios))


def _digit_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([images[labels == k].mean(axis=0)[0] for k in range(10)])


def _template_match(means: np.ndarray) -> tuple[float, int]:
    """Compare each digit class mean (downsampled to 8x8) with the mean of the same digit in
    scikit-learn's bundled digits (known orientation and labels).

    The average over the ten classes is removed from both sets first, so that only what
    distinguishes digits is compared. Returns the mean correlation of class k with digit k
    and the number of classes whose best match is their own digit.
    """
    bunch = load_digits()
    ref = np.stack([bunch.images[bunch.target == k].mean(0) for k in range(10)]).reshape(10, -1)
    small = torch.nn.functional.interpolate(
        torch.tensor(np.ascontiguousarray(means))[:, None], size=(8, 8), mode="area"
    )[:, 0].numpy().reshape(10, -1)

    def normed(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=0, keepdims=True)
        a = a - a.mean(axis=1, keepdims=True)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    corr = normed(small) @ normed(ref).T
    return float(np.diag(corr).mean()), int((corr.argmax(axis=1) == np.arange(10)).sum())


def _vertical_stroke_ratio(mean_one: np.ndarray) -> float:
    """Variance of the column profile / variance of the row profile: >> 1 for a '1'."""
    return float(mean_one.mean(axis=0).var() / mean_one.mean(axis=1).var())


# --------------------------------------------------------------------------------------------
# Offline data: shapes and counts from ../shared/data/README.md
# --------------------------------------------------------------------------------------------

# name: (total samples, image_shape, classes, (min, max) per class over pool + test)
MAT_EXPECTED = {
    "coil20": (1440, (1, 32, 32), 20, (72, 72)),
    "orl": (400, (1, 32, 32), 40, (10, 10)),
    "yale": (165, (1, 32, 32), 15, (11, 11)),
    "yaleb": (2414, (1, 32, 32), 38, (59, 64)),
    "pie": (1700, (1, 32, 32), 10, (170, 170)),
    "usps_mat": (11000, (1, 16, 16), 10, (1100, 1100)),
    "isolet": (1560, (617,), 26, (60, 60)),
    "warppie10p": (210, (1, 55, 44), 10, (21, 21)),
    "warpar10p": (130, (1, 60, 40), 10, (13, 13)),
    "orlraws10p": (100, (1, 112, 92), 10, (10, 10)),
    "pixraw10p": (100, (1, 100, 100), 10, (10, 10)),
    "coil100": (1000, (1, 64, 64), 100, (10, 10)),
    "optdigits": (1934, (1, 32, 32), 10, (180, 204)),
}
FACES = ["orl", "yale", "yaleb", "pie", "warppie10p", "warpar10p", "orlraws10p", "pixraw10p"]


def test_every_mat_set_is_checked():
    assert set(MAT_EXPECTED) == set(MAT_SETS)


@pytest.mark.parametrize("name", sorted(MAT_EXPECTED))
def test_mat_sets_shapes_counts_split(data_root, name):
    total, shape, k, (lo, hi) = MAT_EXPECTED[name]
    ds = load_dataset(name, root=data_root)
    _check_common(ds, k, shape)
    assert len(ds.pool_labels) + len(ds.test_labels) == total
    counts = np.bincount(ds.pool_labels, minlength=k) + np.bincount(ds.test_labels, minlength=k)
    assert counts.min() == lo and counts.max() == hi
    # stratified: every class on both sides, test share close to test_fraction per class
    tf = MAT_SETS[name].test_fraction
    test_counts = np.bincount(ds.test_labels, minlength=k)
    assert test_counts.min() >= 1
    assert np.all(np.abs(test_counts - tf * counts) <= 1.0 + 1e-9)
    # budgets up to 5 per class must be possible; >= 10 per class in the pool wherever
    # classes are large enough to leave 3 test images each (>= 13 per class)
    pool_counts = np.bincount(ds.pool_labels, minlength=k)
    assert pool_counts.min() >= 5
    if lo >= 13:
        assert pool_counts.min() >= 10


def test_mat_split_is_seeded(data_root):
    a = load_dataset("orl", root=data_root, split_seed=3)
    b = load_dataset("orl", root=data_root, split_seed=3)
    c = load_dataset("orl", root=data_root, split_seed=4)
    np.testing.assert_array_equal(a.pool_images, b.pool_images)
    np.testing.assert_array_equal(a.pool_labels, b.pool_labels)
    assert not np.array_equal(a.pool_images, c.pool_images)
    d = load_dataset("orl", root=data_root, test_fraction=0.5)
    assert len(d.test_labels) == 200 and np.all(np.bincount(d.pool_labels) == 5)


@pytest.mark.parametrize("name", FACES)
def test_face_sets_are_upright(data_root, name):
    ds = load_dataset(name, root=data_root)
    images = np.concatenate([ds.pool_images, ds.test_images])[:, 0]
    labels = np.concatenate([ds.pool_labels, ds.test_labels])
    assert _lr_ud_ratio(images, labels) < 0.8
    if images.shape[1] == images.shape[2]:  # the transposed faces must fail the same check
        assert _lr_ud_ratio(images.transpose(0, 2, 1), labels) > 1.5


@pytest.mark.parametrize("name", ["coil20", "coil100"])
def test_object_sets_are_upright(data_root, name):
    """Turntable views rotate about the vertical axis: class means mirror left-right."""
    ds = load_dataset(name, root=data_root)
    images = np.concatenate([ds.pool_images, ds.test_images])[:, 0]
    labels = np.concatenate([ds.pool_labels, ds.test_labels])
    assert _lr_ud_ratio(images, labels) < 0.95
    assert _lr_ud_ratio(images.transpose(0, 2, 1), labels) > 1.05


def test_wrong_pixel_order_is_detected(data_root):
    """The orientation check can fail: ORL read with the wrong order is transposed."""
    wrong = load_dataset("mat", root=data_root, file="ual/ORL.mat", image_shape=[1, 32, 32],
                         order="C")
    images = np.concatenate([wrong.pool_images, wrong.test_images])[:, 0]
    labels = np.concatenate([wrong.pool_labels, wrong.test_labels])
    assert _lr_ud_ratio(images, labels) > 1.5


@pytest.mark.parametrize("name", ["usps", "usps_mat", "optdigits"])
def test_digit_sets_orientation_and_labels(data_root, name):
    """Class k's mean looks like digit k of scikit-learn's digits, and not when transposed."""
    ds = load_dataset(name, root=data_root)
    assert ds.class_names == [str(d) for d in range(10)]
    means = _digit_means(ds.pool_images, ds.pool_labels)
    diag, hits = _template_match(means)
    diag_t, _ = _template_match(means.transpose(0, 2, 1))
    diag_shifted, _ = _template_match(np.roll(means, 1, axis=0))  # labels off by one
    assert diag > 0.3 and hits >= 7
    assert diag > diag_t + 0.25 and diag > diag_shifted + 0.3
    if name == "optdigits":  # sklearn's digits are Optdigits downsampled: near-identical
        assert diag > 0.95


def test_usps_standard_split(data_root):
    ds = load_dataset("usps", root=data_root)
    _check_common(ds, 10, (1, 16, 16))
    assert len(ds.pool_labels) == 7291 and len(ds.test_labels) == 2007
    counts = np.bincount(ds.pool_labels)
    assert counts.min() == 542 and counts.max() == 1194
    assert _vertical_stroke_ratio(ds.pool_images[ds.pool_labels == 1].mean(0)[0]) > 3


def test_mnist(data_root):
    ds = load_dataset("mnist", root=data_root)
    _check_common(ds, 10, (1, 28, 28))
    assert len(ds.pool_labels) == 60000 and len(ds.test_labels) == 10000
    assert ds.pool_images.max() == 1.0
    one = ds.pool_images[ds.pool_labels == 1].mean(0)[0]
    assert _vertical_stroke_ratio(one) > 3 and _vertical_stroke_ratio(one.T) < 1 / 3
    means = _digit_means(ds.pool_images, ds.pool_labels)[:, 4:24, 4:24]  # the 20x20 digit box
    diag, hits = _template_match(means)
    diag_t, _ = _template_match(means.transpose(0, 2, 1))
    assert diag > 0.3 and hits >= 5 and diag > diag_t + 0.25
    small = load_dataset("mnist", root=data_root, max_per_class=20, split_seed=1)
    assert np.all(np.bincount(small.pool_labels) == 20)
    assert np.all(np.bincount(small.test_labels) == 20)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR_SUBSET = ["airplane", "ship"]  # photos with sky above: an orientation signal


@pytest.fixture(scope="module")
def cifar_subset_root(data_root, tmp_path_factory) -> Path:
    """A data root whose cifar10_jpg/ links 4 of the 20 real archives (2 classes).

    Unpacking all 60,020 files costs 10-70 s on a busy 2-core machine; the code path is the
    same for 4 archives. ``NFPF_FULL_DATA_TESTS=1`` also runs the full set (test below).
    """
    root = tmp_path_factory.mktemp("cifar_root")
    (root / "cifar10_jpg").mkdir()
    for split in ("train", "test"):
        for cls in CIFAR_SUBSET:
            name = f"{split}_{cls}.tar.gz"
            (root / "cifar10_jpg" / name).symlink_to(data_root / "cifar10_jpg" / name)
    return root


def test_cifar10_jpg_archives_as_documented(data_root):
    names = sorted(p.name for p in (data_root / "cifar10_jpg").glob("*.tar.gz"))
    assert names == sorted(f"{s}_{c}.tar.gz" for s in ("train", "test") for c in CIFAR_CLASSES)


def test_cifar10_jpg(cifar_subset_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10_jpg", root=cifar_subset_root, cache_dir=cache,
                      max_per_class=100, progress=False)
    _check_common(ds, 2, (3, 32, 32))
    assert ds.class_names == CIFAR_SUBSET
    assert np.all(np.bincount(ds.pool_labels) == 100)
    assert np.all(np.bincount(ds.test_labels) == 100)
    # orientation and channel order: sky above (brighter and bluer at the top), and the
    # mean photo mirrors left-right rather than up-down
    x = ds.pool_images
    assert x[:, :, :8].mean() > x[:, :, -8:].mean() + 0.05
    blue_minus_red = x[:, 2] - x[:, 0]
    assert blue_minus_red[:, :8].mean() > blue_minus_red[:, -8:].mean() + 0.02
    mean = x.mean(axis=(0, 1))
    assert np.abs(mean - mean[:, ::-1]).mean() < 0.5 * np.abs(mean - mean[::-1]).mean()

    # the archives' full contents: 5,000 train and 1,000 test images per class (README)
    tree = unpack_archives(cifar_subset_root / "cifar10_jpg", cache, progress=False)
    pool_files, pool_y, classes = list_image_tree(tree / "train")
    _, test_y, _ = list_image_tree(tree / "test", classes)
    assert np.all(np.bincount(pool_y) == 5000) and np.all(np.bincount(test_y) == 1000)

    # the pixels are plain Pillow's full decode of the same JPEGs (no orientation, alpha or
    # reduced-scale step applies to these files)
    kept = subsample_per_class(pool_y, 100, 0)
    plain = np.stack([np.asarray(Image.open(pool_files[i]).convert("RGB")) for i in kept])
    np.testing.assert_array_equal(ds.pool_images,
                                  plain.transpose(0, 3, 1, 2).astype(np.float32) / 255)

    # a second load neither unpacks nor decodes again
    def forbidden(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(image_folder_module, "_safe_extract", forbidden)
    monkeypatch.setattr(image_folder_module, "_decode", forbidden)
    again = load_dataset("cifar10_jpg", root=cifar_subset_root, cache_dir=cache,
                         max_per_class=100, progress=False)
    np.testing.assert_array_equal(again.pool_images, ds.pool_images)
    np.testing.assert_array_equal(again.test_labels, ds.test_labels)


@pytest.mark.skipif(not os.environ.get("NFPF_FULL_DATA_TESTS"),
                    reason="set NFPF_FULL_DATA_TESTS=1 to unpack and decode all 60,000 "
                           "CIFAR-10 JPEGs (30-120 s here)")
def test_cifar10_jpg_full(data_root, tmp_path):
    ds = load_dataset("cifar10_jpg", root=data_root, cache_dir=tmp_path, progress=False)
    _check_common(ds, 10, (3, 32, 32))
    assert ds.class_names == CIFAR_CLASSES
    assert np.all(np.bincount(ds.pool_labels) == 5000)
    assert np.all(np.bincount(ds.test_labels) == 1000)


# --------------------------------------------------------------------------------------------
# Generic .mat loader on hand-made files (no offline data needed)
# --------------------------------------------------------------------------------------------


def _synthetic_faces(n_per_class=6, classes=(3, 7, 9), h=5, w=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(classes), n_per_class)
    images = rng.integers(0, 256, size=(len(labels), h, w)).astype(np.uint8)
    return images, labels


def test_generic_mat_column_major_v5(tmp_path):
    images, labels = _synthetic_faces()
    rows = np.stack([im.reshape(-1, order="F") for im in images])  # MATLAB order
    scipy.io.savemat(tmp_path / "faces.mat", {"fea": rows, "gnd": labels[:, None]})
    ds = load_dataset("mat", root=tmp_path, file="faces.mat", image_shape=[1, 5, 4], order="F",
                      test_fraction=0.5)
    _check_common(ds, 3, (1, 5, 4))
    assert ds.class_names == ["3", "7", "9"]
    got = np.concatenate([ds.pool_images, ds.test_images])[:, 0]
    got_y = np.concatenate([ds.pool_labels, ds.test_labels])
    want = images.astype(np.float32) / 255
    for img, y in zip(got, got_y, strict=True):  # each image is found, under its own label
        match = np.flatnonzero(np.all(np.isclose(want, img), axis=(1, 2)))
        assert len(match) == 1 and ds.class_names[y] == str(labels[match[0]])


def test_generic_mat_v73_features_by_samples(tmp_path):
    """v7.3 (HDF5) arrays come transposed; DAT stored features x samples; labels 1..K."""
    images, labels = _synthetic_faces(classes=(1, 2))
    rows = np.stack([im.reshape(-1) for im in images]).astype(np.float64)  # row-major
    dat = rows.T  # MATLAB variable DAT is (features x samples)
    with h5py.File(tmp_path / "v73.mat", "w") as f:
        f["DAT"] = dat.T  # h5py stores MATLAB arrays transposed
        f["labels"] = labels[None, :].astype(np.float64).T
    ds = load_dataset("mat", root=tmp_path, file=str(tmp_path / "v73.mat"),
                      image_shape=[1, 5, 4], order="C", test_fraction=0.5, split_seed=1)
    got = np.concatenate([ds.pool_images, ds.test_images])[:, 0]
    got_y = np.concatenate([ds.pool_labels, ds.test_labels])
    want = images.astype(np.float32) / 255
    assert ds.class_names == ["1", "2"]
    for img, y in zip(got, got_y, strict=True):
        match = np.flatnonzero(np.all(np.isclose(want, img), axis=(1, 2)))
        assert len(match) == 1 and labels[match[0]] == y + 1


def test_mat_without_expected_variables(tmp_path):
    (tmp_path / "ual").mkdir()
    bad = tmp_path / "ual" / "ORL.mat"
    scipy.io.savemat(bad, {"images": np.zeros((4, 1024)), "targets": np.arange(4)})
    with pytest.raises(DatasetFormatError) as err:
        load_dataset("orl", root=tmp_path)
    message = str(err.value)
    assert str(bad) in message and "images" in message and "targets" in message
    assert "X/Y" in message
    with pytest.raises(DatasetFormatError, match="fea/gnd"):  # generic: lists every pair
        load_dataset("mat", file=str(bad))


def test_mat_bad_shapes_and_options(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"X": np.zeros((6, 10)), "Y": np.arange(5)})
    with pytest.raises(DatasetFormatError, match="no axis"):
        load_dataset("mat", root=tmp_path, file="a.mat")
    scipy.io.savemat(tmp_path / "b.mat", {"X": np.zeros((6, 10)), "Y": np.arange(6) % 2})
    with pytest.raises(DatasetFormatError, match="image_shape"):
        load_dataset("mat", root=tmp_path, file="b.mat", image_shape=[1, 3, 3])
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("mat", root=tmp_path, file="b.mat", test_fraction=1.5)
    with pytest.raises(ValueError, match="order"):
        load_dataset("mat", root=tmp_path, file="b.mat", image_shape=[1, 2, 5], order="K")
    with pytest.raises(ValueError, match="file="):
        load_dataset("mat", root=tmp_path)
    (tmp_path / "c.mat").write_text("not a mat file")
    with pytest.raises(DatasetFormatError, match=r"c\.mat"):
        load_dataset("mat", root=tmp_path, file="c.mat")


# --------------------------------------------------------------------------------------------
# Image folders and archives on hand-made trees
# --------------------------------------------------------------------------------------------

H, W = 5, 7
CLASSES = ["cat", "dog"]


def _image(split: str, cls: int, i: int) -> np.ndarray:
    """An asymmetric RGB image (H != W) encoding split, class and index."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([yy * 40, xx * 30, np.full((H, W), 10 * i + 100 * cls)], axis=-1)
    return (img + (split == "test") * 5).astype(np.uint8)


def _make_tree(base: Path) -> None:
    for split, n in (("train", 6), ("test", 3)):
        for c, cls in enumerate(CLASSES):
            d = base / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_image(split, c, i)).save(d / f"{i:04d}.png")


def _make_archives(tmp_path: Path) -> Path:
    tree, archives = tmp_path / "tree", tmp_path / "archives"
    _make_tree(tree)
    archives.mkdir()
    for split in ("train", "test"):
        for cls in CLASSES:
            with tarfile.open(archives / f"{split}_{cls}.tar.gz", "w:gz") as tf:
                tf.add(tree / split / cls, arcname=f"{split}/{cls}")
    return archives


def _expected(split: str, n: int) -> np.ndarray:
    return np.stack([_image(split, c, i).transpose(2, 0, 1)
                     for c in range(len(CLASSES)) for i in range(n)]).astype(np.float32) / 255


def test_image_folder_tree_exact_pixels(tmp_path):
    _make_tree(tmp_path / "tree")
    ds = load_dataset("image_folder", root=tmp_path, path="tree", cache_dir=tmp_path / "cache",
                      progress=False)
    _check_common(ds, 2, (3, H, W))
    assert ds.class_names == CLASSES
    np.testing.assert_array_equal(ds.pool_images, _expected("train", 6))
    np.testing.assert_array_equal(ds.test_images, _expected("test", 3))
    np.testing.assert_array_equal(ds.pool_labels, np.repeat([0, 1], 6))


def test_image_folder_resize_grey_and_single_split(tmp_path):
    for c, cls in enumerate(CLASSES):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(_image("train", c, i)).save(tmp_path / "flat" / cls / f"{i}.png")
    ds = load_image_folder(tmp_path, "flat", image_size=[4, 6], mode="L", test_fraction=0.3,
                           split_seed=0, cache_dir=tmp_path / "cache", progress=False)
    _check_common(ds, 2, (1, 4, 6))
    assert np.all(np.bincount(ds.test_labels) == 3) and np.all(np.bincount(ds.pool_labels) == 7)
    sub = load_image_folder(tmp_path, "flat", max_per_class=2, cache_dir=tmp_path / "cache",
                            progress=False)
    assert np.all(np.bincount(sub.pool_labels) == 2) and sub.image_shape == (3, H, W)


def test_archives_unpack_once(tmp_path, monkeypatch):
    archives = _make_archives(tmp_path)
    cache = tmp_path / "cache"
    calls = []
    real_extract = image_folder_module._safe_extract

    def counting(archive, dest):
        calls.append(archive.name)
        real_extract(archive, dest)

    monkeypatch.setattr(image_folder_module, "_safe_extract", counting)
    first = load_dataset("image_folder", root=tmp_path, path="archives", cache_dir=cache,
                         progress=False)
    assert len(calls) == 4
    np.testing.assert_array_equal(first.pool_images, _expected("train", 6))
    np.testing.assert_array_equal(first.test_images, _expected("test", 3))
    unpacked = list((cache / "unpacked").iterdir())
    assert len(unpacked) == 1 and not unpacked[0].name.startswith(".")

    second = load_dataset("image_folder", root=tmp_path, path=archives, cache_dir=cache,
                          progress=False)
    assert len(calls) == 4  # not extracted again
    np.testing.assert_array_equal(second.pool_images, first.pool_images)
    # other image options decode again from the same unpacked tree
    grey = load_dataset("image_folder", root=tmp_path, path="archives", cache_dir=cache,
                        mode="L", progress=False)
    assert len(calls) == 4 and grey.image_shape == (1, H, W)


def test_interrupted_unpack_is_redone(tmp_path, monkeypatch):
    archives = _make_archives(tmp_path)
    cache = tmp_path / "cache"
    real_extract = image_folder_module._safe_extract
    done = []

    def dies_after_one(archive, dest):
        if done:
            raise KeyboardInterrupt("simulated interruption")
        done.append(archive)
        real_extract(archive, dest)

    monkeypatch.setattr(image_folder_module, "_safe_extract", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("image_folder", root=tmp_path, path="archives", cache_dir=cache)
    assert not [p for p in (cache / "unpacked").iterdir()]  # no half tree left behind

    # a leftover temp dir of a killed process (dead pid) is cleaned up and the unpack redone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(image_folder_module, "_safe_extract", real_extract)
    target = unpack_archives(archives, cache, progress=False)
    stale = target.parent / f".{target.name}.tmp-{socket.gethostname()}-{dead}"
    stale.mkdir()
    (stale / "junk").write_text("partial")
    shutil.rmtree(target)
    ds = load_dataset("image_folder", root=tmp_path, path="archives", cache_dir=cache,
                      progress=False)
    assert not stale.exists() and target.is_dir()
    np.testing.assert_array_equal(ds.test_images, _expected("test", 3))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("image_folder", root=tmp_path, path="nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(ValueError, match="path="):
        load_dataset("image_folder", root=tmp_path)
    _make_tree(tmp_path / "tree")
    with pytest.raises(ValueError, match="mode"):
        load_dataset("image_folder", root=tmp_path, path="tree", mode="CMYK")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("image_folder", root=tmp_path, path="tree", image_size=[0, 3])
    with pytest.raises(ValueError, match="max_per_class"):
        load_dataset("image_folder", root=tmp_path, path="tree", max_per_class=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="empty"):
        load_dataset("image_folder", root=tmp_path, path="empty", cache_dir=tmp_path / "c")
    odd = np.zeros((9, 9, 3), np.uint8)
    Image.fromarray(odd).save(tmp_path / "tree" / "train" / "cat" / "z.png")
    with pytest.raises(DatasetFormatError, match="image_size"):
        load_dataset("image_folder", root=tmp_path, path="tree", cache_dir=tmp_path / "c",
                     progress=False)


# --------------------------------------------------------------------------------------------
# Registry, errors, configs
# --------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet-21k")
    message = str(err.value)
    assert "imagenet-21k" in message
    for name in ("digits", "mnist", "usps", "orl", "coil20", "image_folder", "cifar10_jpg"):
        assert name in message


@pytest.mark.parametrize(
    ("name", "relative", "downloadable"),
    [
        ("orl", "ual/ORL.mat", False),
        ("optdigits", "ual/Optdigits.mat", False),
        ("usps_mat", "usps/USPS.mat", False),
        ("usps", "usps/usps.h5", False),
        ("cifar10_jpg", "cifar10_jpg", False),
        ("mnist", "MNIST/raw", True),
        ("cifar10", "cifar-10-batches-py", True),
        ("cifar100", "cifar-100-python", True),
    ],
)
def test_missing_root_says_where_and_how(tmp_path, name, relative, downloadable):
    root = tmp_path / "no_data_here"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=root)
    message = str(err.value)
    assert str(root / relative) in message  # the full path it looked at
    assert "paths.data_root" in message and DATA_ROOT_ENV in message
    assert ("download=true" in message) == downloadable
    assert isinstance(err.value, FileNotFoundError)


def test_env_variable_overrides_root(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from_env"))
    with pytest.raises(DatasetNotFoundError, match="from_env"):
        load_dataset("orl", root=tmp_path / "from_config")


def test_subsample_per_class_is_seeded():
    labels = np.repeat(np.arange(4), [10, 3, 7, 1])
    a = subsample_per_class(labels, 5, seed=0)
    assert np.array_equal(a, subsample_per_class(labels, 5, seed=0))
    assert not np.array_equal(a, subsample_per_class(labels, 5, seed=1))
    assert np.array_equal(np.bincount(labels[a]), [5, 3, 5, 1])
    assert np.all(np.diff(a) > 0)


def _yaml_configs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONF_DIR.glob("*.yaml"))}


def test_one_config_per_registered_dataset():
    assert set(_yaml_configs()) == set(available_datasets())


@pytest.mark.parametrize("name", sorted(_LOADERS))
def test_config_matches_loader_signature(name):
    cfg = OmegaConf.load(_yaml_configs()[name])
    assert cfg._target_ == "nfpf.data.load_dataset" and cfg.name == name
    assert OmegaConf.to_container(cfg)["root"] == "${paths.data_root}"
    fn = load_image_folder if name == "image_folder" else _LOADERS[name]
    params = {p: v for p, v in inspect.signature(fn).parameters.items()
              if p != "root" and v.kind is not inspect.Parameter.KEYWORD_ONLY}
    options = {k for k in cfg if k not in ("_target_", "name", "root")}
    assert options == set(params), f"{name}: config options differ from the loader's"
    for key in options:  # documented defaults are the loader's defaults
        if OmegaConf.is_missing(cfg, key) or key == "cache_dir":
            continue
        assert cfg[key] == params[key].default, f"{name}.{key}"


def test_config_instantiates_digits():
    from hydra.utils import instantiate

    cfg = OmegaConf.create({"paths": {"data_root": None},
                            "dataset": OmegaConf.load(_yaml_configs()["digits"])})
    ds = instantiate(cfg.dataset)
    _check_common(ds, 10, (1, 8, 8))
    assert len(ds.pool_labels) + len(ds.test_labels) == 1797
    cfg = OmegaConf.create({"paths": {"data_root": None},
                            "dataset": OmegaConf.load(_yaml_configs()["image_folder"])})
    assert cfg.dataset.cache_dir is None  # oc.select falls back when paths.cache_dir is unset


def test_digits_is_embedded(tmp_path):
    ds = load_dataset("digits", root=tmp_path / "anything")
    _check_common(ds, 10, (1, 8, 8))
    diag, hits = _template_match(_digit_means(ds.pool_images, ds.pool_labels))
    assert diag > 0.99 and hits == 10


def test_unknown_loader_option_lists_the_valid_ones():
    from nfpf.data import load_dataset

    with pytest.raises(ValueError, match=r"has no option.*tst.*test_fraction"):
        load_dataset("digits", tst=0.2)
