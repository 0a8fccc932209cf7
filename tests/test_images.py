"""The one image decoder (:mod:`nfpf.data.images`): hand-made files of every rule checked
against pixels computed here with plain Pillow and numpy, and the same pixels through
``nfpf-select``'s folder reader and the image-folder dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nfpf.app.folder import image_cache_key, read_images, scan_folder
from nfpf.data import load_dataset
from nfpf.data.images import (
    ImageSizeError,
    decode_files,
    decode_image,
    decoded_images_key,
    is_image_name,
)

ORIENTATION = 0x0112
WHITE = 255.0


def _raw_rgb(path: Path) -> np.ndarray:
    """The stored pixels, as Pillow decodes them with no orientation applied."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg_with_orientation(path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    base = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
    im = Image.fromarray(base).resize((24, 16), Image.NEAREST)  # blocks survive JPEG well
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    im.save(path, quality=95, exif=exif)


@pytest.mark.parametrize(("orientation", "upright"), [
    (1, lambda a: a),
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),   # stored rotated: turn 90° clockwise to display
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
    path = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(path, orientation)
    expected = upright(_raw_rgb(path))
    out = decode_image(path, None, "RGB")
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_alpha_is_composited_onto_white(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    alpha = rng.integers(0, 256, (6, 7, 1)).astype(np.float64)
    alpha[0, 0] = 0
    alpha[0, 1] = 255
    Image.fromarray(np.concatenate([rgb, alpha], -1).astype(np.uint8), "RGBA").save(
        tmp_path / "a.png")
    expected = rgb * alpha / 255 + WHITE * (1 - alpha / 255)
    out = decode_image(tmp_path / "a.png", None, "RGB").astype(np.float64)
    assert np.abs(out - expected).max() <= 1.0  # Pillow's integer rounding
    assert (out[0, 0] == 255).all() and (out[0, 1] == rgb[0, 1]).all()


def test_sixteen_bit_grey_keeps_the_high_byte(tmp_path):
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, (9, 5)).astype(np.uint16)
    deep[0, :3] = [0, 255, 65535]          # 255 must not saturate, as a clip to 8 bits would
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I;16")
    grey = decode_image(tmp_path / "deep.png", None, "L")
    np.testing.assert_array_equal(grey[..., 0], (deep // 256).astype(np.uint8))
    rgb = decode_image(tmp_path / "deep.png", None, "RGB")
    np.testing.assert_array_equal(rgb, np.repeat(grey, 3, axis=-1))


def test_palette_gif_with_a_transparent_entry(tmp_path):
    rng = np.random.default_rng(2)
    index = rng.integers(0, 4, (5, 6)).astype(np.uint8)
    palette = np.array([[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]], dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.ravel().tolist())
    im.save(tmp_path / "p.gif", transparency=0)
    expected = palette[index].astype(np.uint8)
    expected[index == 0] = 255                               # transparent entry -> white
    np.testing.assert_array_equal(decode_image(tmp_path / "p.gif", None, "RGB"), expected)
    # grey by ITU-R 601-2 luma, as Pillow's "L" conversion computes it
    luma = expected.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    out = decode_image(tmp_path / "p.gif", None, "L")[..., 0].astype(np.float64)
    assert np.abs(out - luma).max() <= 1.0


def test_resize_and_strict_size(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (10, 14, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    expected = np.asarray(Image.fromarray(pixels).resize((7, 5), Image.BILINEAR))
    np.testing.assert_array_equal(decode_image(tmp_path / "x.png", (5, 7), "RGB"), expected)
    with pytest.raises(ImageSizeError, match="14x10"):
        decode_image(tmp_path / "x.png", (5, 7), "RGB", resize=None)
    np.testing.assert_array_equal(decode_image(tmp_path / "x.png", (10, 14), resize=None),
                                  pixels)


def test_draft_only_changes_large_jpegs_and_little(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    Image.fromarray(base).resize((320, 240), Image.BICUBIC).save(tmp_path / "big.jpg")
    fast = decode_image(tmp_path / "big.jpg", (32, 32), draft=True).astype(int)
    full = decode_image(tmp_path / "big.jpg", (32, 32), draft=False).astype(int)
    assert not np.array_equal(fast, full) and np.abs(fast - full).mean() < 2.0
    # a JPEG smaller than twice the target is decoded in full either way
    np.testing.assert_array_equal(decode_image(tmp_path / "big.jpg", (200, 200), draft=True),
                                  decode_image(tmp_path / "big.jpg", (200, 200), draft=False))


def test_decode_files_reports_failures_in_order(tmp_path):
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    Image.new("L", (4, 4), 9).save(tmp_path / "c.png")
    paths = [tmp_path / n for n in ("a.png", "b.png", "c.png")]
    for workers in (0, 3):
        images, usable, failures = decode_files(paths, (2, 2), "RGB", num_workers=workers,
                                                progress=False)
        assert images.shape == (2, 3, 2, 2) and usable.tolist() == [0, 2]
        assert [i for i, _ in failures] == [1]
        assert (images[0] == np.array([1, 2, 3])[:, None, None]).all() and (images[1] == 9).all()


def test_app_and_dataset_decode_the_same_pixels(tmp_path):
    """Every rule above through both readers: nfpf-select's folder and the dataset (no JPEG
    here is twice the target, where only nfpf-select's ``draft`` would differ)."""
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tree / split / cls).mkdir(parents=True)
    _jpeg_with_orientation(tree / "train" / "a" / "rot.jpg", 6)
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (12, 9, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tree / "train" / "a" / "alpha.png")
    Image.fromarray(rng.integers(0, 65536, (8, 8)).astype(np.uint16)).save(
        tree / "train" / "b" / "deep.png")
    pal = Image.fromarray(rng.integers(0, 4, (7, 7)).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    pal.save(tree / "train" / "b" / "pal.gif", transparency=1)
    for cls in ("a", "b"):
        Image.new("RGB", (5, 5), (3, 4, 5)).save(tree / "test" / cls / "t.bmp")

    ds = load_dataset("image_folder", root=tmp_path, path="tree", image_size=[12, 10],
                      cache_dir=tmp_path / "cache", progress=False)
    scan = scan_folder(tree / "train")
    assert scan.files == ["a/alpha.png", "a/rot.jpg", "b/deep.png", "b/pal.gif"]
    images, usable, skipped = read_images(scan, (12, 10), "RGB", "stretch", progress=False)
    assert not skipped and usable.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(ds.pool_images, images.astype(np.float32) / 255)
    upright = np.rot90(_raw_rgb(tree / "train" / "a" / "rot.jpg"), -1)
    expected = np.asarray(Image.fromarray(np.ascontiguousarray(upright)).resize(
        (10, 12), Image.BILINEAR))
    np.testing.assert_array_equal(images[1].transpose(1, 2, 0), expected)


def test_image_names_and_cache_key(tmp_path):
    assert is_image_name("a.GIF") and is_image_name("b.pbm") and is_image_name("c.JPEG")
    assert not is_image_name(".hidden.png") and not is_image_name("notes.txt")
    names, sizes, mtimes = ["a.png", "b.png"], np.array([10, 20]), np.array([1, 2])
    key = decoded_images_key(names, sizes, mtimes, {"size": [8, 8], "mode": "RGB"})
    assert key == decoded_images_key(list(names), sizes.copy(), mtimes.copy(),
                                     {"mode": "RGB", "size": [8, 8]})
    options = {"size": [8, 8], "mode": "RGB"}
    assert key != decoded_images_key(names, sizes, mtimes + np.array([0, 1]), options)
    assert key != decoded_images_key(names, sizes + np.array([0, 1]), mtimes, options)
    assert key != decoded_images_key(names, sizes, mtimes, {"size": [8, 8], "mode": "L"})
    assert key != decoded_images_key(["a.png", "c.png"], sizes, mtimes, options)
    Image.new("RGB", (3, 3)).save(tmp_path / "x.png")
    before = image_cache_key(scan_folder(tmp_path), (8, 8), "RGB", "stretch")
    os.utime(tmp_path / "x.png", ns=(5, 5))
    assert image_cache_key(scan_folder(tmp_path), (8, 8), "RGB", "stretch") != before
