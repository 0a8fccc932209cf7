"""Choose which of your own images to label: the library behind ``nfpf-select``.

:func:`select_images` takes a folder of unlabeled images (nested folders allowed) or a feature
file (``.npy``, ``.csv``, ``.parquet``), a budget B, a selector and a feature space, and writes
into one output folder:

- ``selection.csv`` -- the B picks: ``rank`` (1 = chosen first), ``index`` (into the usable
  images in sorted path order, or the feature file's row), ``path`` (relative to the input
  folder), ``absolute_path`` and ``score`` (the selector's own score of that pick when it
  exposes one, else empty);
- ``label_studio.json`` -- a Label Studio task list (see :func:`label_studio_tasks`);
- ``contact_sheet.png`` -- the picks as a grid of thumbnails labelled with their rank;
- ``skipped.csv`` -- unreadable image files and the reason (``path``, ``reason``);
- ``summary.json`` -- counts, options, cache use, timings.

Every check that can fail on the user's input runs before any expensive work, and all
outputs are written into a hidden temporary folder beside the output and moved into place
only when all of them are complete, so an error or an interruption never leaves a partial
output. The input folder is only read. See ``docs/select.md`` for the full reference.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from nfpf.app.folder import (
    IMAGE_EXTENSIONS,
    MODES,
    RESIZE_POLICIES,
    image_cache_key,
    load_cached_images,
    parse_image_size,
    read_images,
    save_cached_images,
    scan_folder,
)
from nfpf.core.selection import Pool, Selector, check_seed
from nfpf.features import FeatureSpace
from nfpf.io import cache_root, config_hash, write_npy_atomic

__all__ = [
    "DEFAULT_URL_PREFIX",
    "FEATURE_FILE_SUFFIXES",
    "OUTPUT_FILES",
    "SelectError",
    "SelectResult",
    "default_cache_dir",
    "label_studio_tasks",
    "load_feature_file",
    "pick_scores",
    "select_images",
    "write_contact_sheet",
]

log = logging.getLogger(__name__)

#: Every file ``select_images`` may write into the output folder.
OUTPUT_FILES = ("selection.csv", "label_studio.json", "contact_sheet.png", "skipped.csv",
                "summary.json")
#: Accepted feature-file types.
FEATURE_FILE_SUFFIXES = (".npy", ".csv", ".parquet")
#: Label Studio's URL of a file served from local storage, followed by the path relative to
#: ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
DEFAULT_URL_PREFIX = "/data/local-files/?d="
#: Columns of a .csv/.parquet feature file that name the rows (the first one present wins).
NAME_COLUMNS = ("path", "id")


class SelectError(ValueError):
    """A problem with the input or the options, reported before any output is written."""


@dataclass
class SelectResult:
    """What :func:`select_images` did.

    Attributes
    ----------
    output : Path
        The output folder.
    files : dict of str to Path
        The files written, by name.
    summary : dict
        Counts, options, cache use and timings (also written as ``summary.json``).
    """

    output: Path
    files: dict[str, Path]
    summary: dict[str, Any] = field(default_factory=dict)

    def summary_text(self) -> str:
        """The short summary ``nfpf-select`` prints."""
        s = self.summary
        lines = []
        if s["input_kind"] == "folder":
            lines.append(f"nfpf-select: {s['budget']} images to label, chosen by {s['method']} "
                         f"from {s['n_usable']} usable images")
            lines.append(f"  scanned   {s['n_files']} image files in {s['input']} "
                         f"({s['n_ignored']} other files ignored)")
            lines.append(f"  usable    {s['n_usable']}   skipped {s['n_skipped']} unreadable"
                         + (" (see skipped.csv)" if s["n_skipped"] else ""))
            lines.append(f"  method    {s['method']} on {s['features']} features of "
                         f"{s['image_size'][0]}x{s['image_size'][1]} {s['mode']} images "
                         f"({s['resize']}), seed {s['seed']}")
        else:
            lines.append(f"nfpf-select: {s['budget']} rows to label, chosen by {s['method']} "
                         f"from {s['n_usable']} rows of {s['input']}")
            lines.append(f"  method    {s['method']} on {s['features']} features, "
                         f"seed {s['seed']}")
        cache = s["cache"]
        if cache["dir"] is not None:
            lines.append(f"  cache     images: {cache['images']}, features: {cache['features']}"
                         f"  ({cache['dir']})")
        first = True
        for path in self.files.values():
            lines.append(f"  {'outputs' if first else '':<9} {_show(path)}")
            first = False
        for note in s["notes"]:
            lines.append(f"  note      {note}")
        t = s["timings"]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k != "total")
        lines.append(f"  time      {t['total']:.1f} s  ({parts})")
        return "\n".join(lines)


def _show(path: str | os.PathLike) -> str:
    """``path`` relative to the current folder when it is below it, else as is."""
    try:
        return Path(path).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return os.fspath(path)


def default_cache_dir() -> Path:
    """``$NFPF_CACHE_DIR/select`` if that variable is set, else ``~/.cache/nfpf/select``."""
    return cache_root() / "select"


# ----------------------------------------------------------------------------- options


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _abspath(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _check_budget(budget: Any) -> int:
    try:
        ok = not isinstance(budget, bool) and float(budget).is_integer()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SelectError(f"budget must be a whole number of images, e.g. budget=100; "
                          f"got {budget!r}.")
    if int(budget) <= 0:
        raise SelectError(f"budget must be at least 1 (the number of images to label); "
                          f"got {int(budget)}.")
    return int(budget)


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _check_output(output: Any, input_path: Path, overwrite: bool) -> tuple[Path, Path]:
    """Validate the output folder; return it and the existing folder the staging goes in."""
    if output in (None, ""):
        raise SelectError("output is required: the folder to write the picks into, "
                          "e.g. output=picks.")
    out = _abspath(output)
    real_out = Path(os.path.realpath(out))
    real_in = Path(os.path.realpath(input_path))
    if input_path.is_dir() and _is_within(real_out, real_in):
        raise SelectError(f"output={output} is inside the input folder {input_path}; the input "
                          f"folder is never written to. Choose an output outside it.")
    if out.exists():
        if not out.is_dir():
            raise SelectError(f"output={output} exists and is a file, not a folder. Choose a "
                              f"new folder name.")
        others = [p.name for p in out.iterdir()]
        if others and not overwrite:
            raise SelectError(
                f"output folder {out} already exists and is not empty ({len(others)} entries, "
                f"e.g. {sorted(others)[0]!r}). Choose a new folder, or pass overwrite=true to "
                f"replace nfpf-select's files in it ({', '.join(OUTPUT_FILES)}).")
        parent = out.parent
    else:
        parent = _nearest_existing(out.parent)
        if not parent.is_dir():
            raise SelectError(f"output={output}: {parent} is a file, so the output folder "
                              f"cannot be created below it.")
    probe = parent / f".nfpf-select-probe-{secrets.token_hex(6)}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
        if out.exists():
            probe = out / probe.name
            probe.touch(exist_ok=False)
            probe.unlink()
    except OSError as err:
        raise SelectError(f"output={output} is not writable: cannot create a file in {probe.parent}"
                          f" ({err.strerror or err}). Choose a folder you can write to.") from None
    return out, parent


def _build_selector(selector: Any, name: str | None) -> tuple[Selector, str]:
    from hydra.errors import InstantiationException

    from nfpf.core.api import available_selectors, make_selector

    try:
        if isinstance(selector, Selector):
            return selector, name or type(selector).__name__
        if isinstance(selector, str):
            return make_selector(selector), name or selector
        if isinstance(selector, Mapping):
            from hydra.utils import instantiate
            from omegaconf import OmegaConf

            built = instantiate(OmegaConf.create(dict(selector)), _convert_="all")
            if not isinstance(built, Selector):
                raise SelectError(f"the selector config builds {type(built).__name__}, "
                                  f"not a Selector.")
            return built, name or type(built).__name__
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise SelectError(f"selector {name or ''}: {cause}") from None
    except ValueError as err:
        if isinstance(err, SelectError):
            raise
        raise SelectError(str(err)) from None
    raise SelectError(f"selector must be a name ({', '.join(available_selectors())}), a "
                      f"config with _target_, or a Selector; got {type(selector).__name__}.")


def _build_features(features: Any, name: str | None) -> tuple[FeatureSpace, str, Any]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nfpf.core.api import CONFIG_DIR

    if isinstance(features, FeatureSpace):
        config = {"class": type(features).__qualname__, "params": vars(features)}
        return features, name or type(features).__name__, json.loads(
            json.dumps(config, default=str))
    if isinstance(features, str):
        path = CONFIG_DIR / "features" / f"{features}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / "features").glob("*.yaml"))
            raise SelectError(f"Unknown feature space {features!r}. Known: {', '.join(known)}.")
        name, features = name or features, OmegaConf.to_container(OmegaConf.load(path))
    if isinstance(features, Mapping):
        config = dict(features)
        try:
            space = instantiate(OmegaConf.create(config), _convert_="all")
        except Exception as err:
            raise SelectError(f"features {name or ''}: {err.__cause__ or err}") from None
        if not isinstance(space, FeatureSpace):
            raise SelectError(f"the features config builds {type(space).__name__}, not a "
                              f"FeatureSpace.")
        return space, name or type(space).__name__, config
    raise SelectError(f"features must be a name, a config with _target_ or a FeatureSpace; "
                      f"got {type(features).__name__}.")


@dataclass
class _LabelStudio:
    url_prefix: str = DEFAULT_URL_PREFIX
    document_root: str | None = None
    image_key: str = "image"


@dataclass
class _ContactSheet:
    max_images: int = 400
    thumb_size: int = 96
    columns: int | None = None


def _options(cls, values: Mapping[str, Any] | None, what: str):
    values = dict(values or {})
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise SelectError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}.")
    return cls(**values)


# ----------------------------------------------------------------------------- feature files


def load_feature_file(path: str | os.PathLike) -> tuple[np.ndarray, list[str] | None, str | None]:
    """Read a feature file: one row per sample.

    Parameters
    ----------
    path : .npy (a 2-D numeric array), .csv or .parquet (numeric columns; an optional column
        named ``path`` or ``id`` names the rows and is not a feature)

    Returns
    -------
    features : ndarray of shape (n, d), float32
    names : list of str of length n, or None
    name_column : "path", "id" or None
    """
    path = Path(path)
    suffix = path.suffix.lower()
    names: list[str] | None = None
    name_column: str | None = None
    if suffix == ".npy":
        try:
            X = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SelectError(f"cannot read {path} as a .npy array: {err}") from None
        if X.ndim != 2:
            raise SelectError(f"{path} holds an array of shape {X.shape}; expected 2-D "
                              f"(n_samples, n_features). Reshape it, e.g. X.reshape(len(X), -1).")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise SelectError(f"{path} holds {X.dtype} values; expected numbers.")
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        except Exception as err:
            raise SelectError(f"cannot read {path} as {suffix[1:]}: {err}") from None
        for column in NAME_COLUMNS:
            if column in frame.columns:
                name_column = column
                names = [str(v) for v in frame[column].tolist()]
                break
        data = frame.drop(columns=[c for c in NAME_COLUMNS if c in frame.columns])
        bad = [str(c) for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
        if bad:
            raise SelectError(
                f"{path}: column(s) {bad[:5]} are not numeric. Every column must be a number "
                f"except one optional name column called {' or '.join(NAME_COLUMNS)}.")
        if data.shape[1] == 0:
            raise SelectError(f"{path} has no numeric feature columns.")
        X = data.to_numpy(dtype=np.float64)
    else:
        raise SelectError(f"input={path} is a file of an unsupported type {suffix!r}: give a "
                          f"folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    if X.shape[0] == 0:
        raise SelectError(f"{path} has no rows: there is nothing to select from.")
    X = np.asarray(X, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite)
        raise SelectError(f"{path}: {bad_rows.size} row(s) contain NaN or infinite values "
                          f"(first rows: {bad_rows[:5].tolist()}). Remove or impute them.")
    return X, names, name_column


# ----------------------------------------------------------------------------- scores


_HISTORY_INDEX_KEYS = ("chosen", "selected", "indices", "picked", "added")
_HISTORY_SCORE_KEYS = ("scores", "score", "selected_scores", "rd")


def pick_scores(selector: Selector, indices: np.ndarray, n: int) -> np.ndarray:
    """The selector's own score of each pick, NaN where it exposes none.

    Looked up, in this order: ``pick_scores_`` (one score per returned index); ``scores_``
    over the pool (or over ``candidates_`` when that is set, as ALMS/DUAL do); per-round
    ``history_`` records holding the round's chosen indices (``chosen``/``selected``/...) and
    their scores (``scores``/``score``/...) -- NFPF's RD score in the round a sample was
    picked (its initial seeds have none).

    Parameters
    ----------
    selector : Selector, after ``select``
    indices : ndarray of shape (budget,)
    n : int, pool size

    Returns
    -------
    ndarray of shape (budget,), float64
    """
    indices = np.asarray(indices, dtype=np.int64)
    out = np.full(indices.size, np.nan)
    direct = getattr(selector, "pick_scores_", None)
    if direct is not None and np.size(direct) == indices.size:
        return np.asarray(direct, dtype=np.float64).ravel()
    scores = getattr(selector, "scores_", None)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        candidates = getattr(selector, "candidates_", None)
        if candidates is None and scores.size == n:
            return scores[indices]
        if candidates is not None and np.size(candidates) == scores.size:
            lookup = dict(zip(np.asarray(candidates).tolist(), scores.tolist(), strict=True))
            return np.asarray([lookup.get(int(i), np.nan) for i in indices])
    lookup: dict[int, float] = {}
    for record in getattr(selector, "history_", None) or []:
        if not isinstance(record, Mapping):
            continue
        idx_key = next((k for k in _HISTORY_INDEX_KEYS if k in record), None)
        score_key = next((k for k in _HISTORY_SCORE_KEYS if k in record), None)
        if idx_key is None or score_key is None:
            continue
        chosen, values = record[idx_key], record[score_key]
        if np.ndim(chosen) != 1 or np.ndim(values) != 1 or len(chosen) != len(values):
            continue
        for i, v in zip(chosen, values, strict=True):
            lookup.setdefault(int(i), float(v))
    if lookup:
        out = np.asarray([lookup.get(int(i), np.nan) for i in indices])
    return out


# ----------------------------------------------------------------------------- outputs


def _url_path(absolute: str, document_root: Path) -> str:
    return Path(os.path.relpath(absolute, document_root)).as_posix()


def label_studio_tasks(
    absolute_paths: Sequence[str],
    ranks: Sequence[int],
    scores: Sequence[float],
    paths: Sequence[str],
    document_root: str | os.PathLike,
    url_prefix: str = DEFAULT_URL_PREFIX,
    image_key: str = "image",
    meta: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A Label Studio task list (its "basic Label Studio JSON format") for the picks.

    Each task is ``{"data": {image_key: url, "rank": r, "score": s}, "meta": {...}}``
    (rank and score in ``data`` too, so that annotators see and sort by them as Data Manager
    columns; ``score`` is None for picks without one); ``url`` is
    ``url_prefix`` + the image's path relative to ``document_root``, percent-encoded (``/``
    kept). With the default prefix, Label Studio serves the file from local storage when it
    runs with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<document_root>``. ``data`` must hold the
    variable the labeling config uses (``<Image value="$image"/>``); extra keys are allowed
    and show as Data Manager columns. ``meta`` holds ``rank``, ``score``, ``path`` and
    the run's ``method``/``seed``.
    """
    root = Path(os.path.abspath(document_root))
    tasks = []
    for absolute, rank, score, path in zip(absolute_paths, ranks, scores, paths, strict=True):
        url = url_prefix + quote(_url_path(absolute, root), safe="/")
        score = None if score is None or not np.isfinite(score) else float(score)
        tasks.append({
            "data": {image_key: url, "rank": int(rank), "score": score},
            "meta": {"rank": int(rank), "score": score, "path": path, **dict(meta or {})},
        })
    return tasks


def write_contact_sheet(
    path: str | os.PathLike,
    absolute_paths: Sequence[str],
    ranks: Sequence[int],
    fallback: np.ndarray | None = None,
    thumb_size: int = 96,
    columns: int | None = None,
) -> tuple[int, int]:
    """Draw the picks as a grid of thumbnails, each labelled ``#rank``, and save it as PNG.

    Thumbnails come from the original files (aspect ratio kept, centred in a square cell);
    a file that cannot be read any more falls back to ``fallback[i]`` (uint8 (C, H, W)).

    Returns
    -------
    (width, height) of the sheet in pixels.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    from nfpf.app.folder import _to_mode

    n = len(absolute_paths)
    cols = int(columns) if columns else max(1, min(n, 20, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    pad = max(2, thumb_size // 24)
    cell = thumb_size + pad
    sheet = Image.new("RGB", (cols * cell + pad, rows * cell + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=max(9, thumb_size // 7))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for k, (file, rank) in enumerate(zip(absolute_paths, ranks, strict=True)):
        try:
            with Image.open(file) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (thumb_size, thumb_size))
                im.load()
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:
                    pass
                thumb = ImageOps.contain(_to_mode(im, "RGB"), (thumb_size, thumb_size),
                                         Image.BILINEAR)
        except Exception:
            if fallback is None:
                continue
            pixels = np.moveaxis(fallback[k], 0, -1)
            thumb = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
            thumb = ImageOps.contain(thumb.convert("RGB"), (thumb_size, thumb_size),
                                     Image.NEAREST)
        x0 = pad + (k % cols) * cell
        y0 = pad + (k // cols) * cell
        sheet.paste(thumb, (x0 + (thumb_size - thumb.width) // 2,
                            y0 + (thumb_size - thumb.height) // 2))
        label = f"#{rank}"
        box = draw.textbbox((x0, y0), label, font=font)
        draw.rectangle((box[0], box[1], box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((x0 + 1, y0 + 1), label, fill=(255, 255, 255), font=font)
    sheet.save(path, format="PNG")
    return sheet.size


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _format_score(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else repr(float(value))


def _commit(stage: Path, out: Path) -> None:
    """Move the staged outputs into ``out`` (a rename when ``out`` does not exist yet)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(stage, out)
            return
        except OSError:
            if not out.is_dir():
                shutil.move(os.fspath(stage), os.fspath(out))
                return
    produced = {p.name for p in stage.iterdir()}
    for name in produced:
        os.replace(stage / name, out / name)
    for name in OUTPUT_FILES:  # stale files of an earlier run, when overwriting
        if name not in produced:
            (out / name).unlink(missing_ok=True)
    stage.rmdir()


# ----------------------------------------------------------------------------- main entry


def _fit_features(space: FeatureSpace, X: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    limit = min(X.shape)
    n_components = getattr(space, "n_components", None)
    if isinstance(n_components, int) and n_components > limit:
        log.warning("features: %s n_components=%d exceeds min(n_samples, n_dims)=%d; using %d",
                    name, n_components, limit, limit)
        notes.append(f"{name} n_components lowered from {n_components} to {limit} "
                     f"(min of samples and dimensions)")
        space.n_components = limit
    log.info("features: fitting %s on %d x %d", name, X.shape[0], X.shape[1])
    try:
        return np.asarray(space.fit_transform(X), dtype=np.float32)
    except ValueError as err:
        raise SelectError(f"features {name}: {err}") from None


def select_images(
    input: str | os.PathLike,
    budget: int,
    output: str | os.PathLike,
    *,
    selector: str | Mapping[str, Any] | Selector = "nfpf",
    features: str | Mapping[str, Any] | FeatureSpace = "pca",
    selector_name: str | None = None,
    features_name: str | None = None,
    image_size: int | Sequence[int] = 32,
    mode: str = "RGB",
    resize: str = "stretch",
    seed: int = 0,
    n_classes: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 4,
    overwrite: bool = False,
    transform_features: bool = False,
    label_studio: Mapping[str, Any] | None = None,
    contact_sheet: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> SelectResult:
    """Choose ``budget`` images of a folder (or rows of a feature file) to label.

    Parameters
    ----------
    input : path
        A folder of images (searched recursively; see :mod:`nfpf.app.folder` for which files and
        how they are decoded) or a feature file (.npy n×d; .csv/.parquet with numeric columns
        and an optional ``path`` or ``id`` column naming the rows).
    budget : int
        How many to pick, 1 <= budget <= number of usable images.
    output : path
        Output folder; created (with its parents). An existing non-empty folder is an
        error unless ``overwrite``.
    selector : str, mapping or Selector, default "nfpf"
        A selector name (``conf/selector/<name>.yaml``), a config with ``_target_``, or an
        instance.
    features : str, mapping or FeatureSpace, default "pca"
        The feature space the selector sees (``conf/features/<name>.yaml``), fitted on the
        images' flattened [0, 1] pixels. PCA's ``n_components`` is lowered to
        min(n_images, n_pixels) when larger (noted in the summary).
    selector_name, features_name : str, optional
        Names shown in the outputs (default: derived from the arguments).
    image_size : int or (height, width), default 32
        Size every image is resized to before computing features.
    mode : {"RGB", "L"}, default "RGB"
    resize : {"stretch", "center_crop", "pad"}, default "stretch"
    seed : int, default 0
        Seed of the selection; the same inputs and seed give the same picks.
    n_classes : int, optional
        Expected number of classes, if known (NFPF's seeding K-means uses it).
    cache : bool, default True
        Cache decoded images and features (folders only).
    cache_dir : path, optional
        Cache location; default :func:`default_cache_dir`. Must not be inside the input.
    num_workers : int, default 4
        Image-decoding threads.
    overwrite : bool, default False
        Allow an existing non-empty output folder: nfpf-select's files in it are replaced
        (stale ones removed), other files are kept.
    transform_features : bool, default False
        Feature files only: pass the vectors through ``features`` (fitted on them) instead of
        using them as they are.
    label_studio : mapping, optional
        ``url_prefix`` (default ``"/data/local-files/?d="``), ``document_root`` (default: the
        folder that contains the input folder) and ``image_key`` (default ``"image"``).
    contact_sheet : mapping, optional
        ``max_images`` (default 400: the first picks by rank), ``thumb_size`` (96 pixels),
        ``columns`` (default about sqrt(picks), at most 20).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    SelectResult

    Raises
    ------
    SelectError
        Bad input or options (missing input, no images, budget out of range, output not
        writable, unknown selector, ...). Raised before any output file is written.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    # -- checks that need no reading
    budget = _check_budget(budget)
    try:
        seed = check_seed(seed)
    except ValueError as err:
        raise SelectError(str(err)) from None
    try:
        size = parse_image_size(image_size)
    except ValueError as err:
        raise SelectError(str(err)) from None
    if mode not in MODES:
        raise SelectError(f"mode must be one of {list(MODES)}; got {mode!r}.")
    if resize not in RESIZE_POLICIES:
        raise SelectError(f"resize must be one of {list(RESIZE_POLICIES)}; got {resize!r}.")
    if isinstance(num_workers, bool) or int(num_workers) != num_workers or num_workers < 0:
        raise SelectError(f"num_workers must be an integer >= 0; got {num_workers!r}.")
    if n_classes is not None and (isinstance(n_classes, bool) or int(n_classes) < 1):
        raise SelectError(f"n_classes must be a positive integer or null; got {n_classes!r}.")
    if input in (None, ""):
        raise SelectError("input is required: a folder of images or a feature file, "
                          "e.g. input=path/to/images.")
    input_path = _abspath(input)
    if not input_path.exists():
        raise SelectError(f"input {os.fspath(input)!r} does not exist (looked for {input_path}). "
                          f"Give a folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    is_folder = input_path.is_dir()
    if not is_folder and input_path.suffix.lower() not in FEATURE_FILE_SUFFIXES:
        raise SelectError(f"input={input} is a file of an unsupported type "
                          f"{input_path.suffix!r}: give a folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    input_root = input_path if is_folder else input_path.parent
    out, staging_parent = _check_output(output, input_path, bool(overwrite))
    ls_opts = _options(_LabelStudio, label_studio, "label_studio")
    sheet_opts = _options(_ContactSheet, contact_sheet, "contact_sheet")
    document_root = _abspath(ls_opts.document_root) if ls_opts.document_root else input_root.parent
    cache_root = None
    if cache and is_folder:
        cache_root = _abspath(cache_dir) if cache_dir else default_cache_dir()
        if _is_within(Path(os.path.realpath(cache_root)), Path(os.path.realpath(input_path))):
            raise SelectError(f"cache_dir={cache_root} is inside the input folder, which is "
                              f"never written to. Choose another cache_dir.")
    selector_obj, method = _build_selector(selector, selector_name)
    space, features_label, features_config = _build_features(features, features_name)
    timings["setup"] = time.perf_counter() - t_start
    cache_state = {"dir": None if cache_root is None else str(cache_root),
                   "images": "off", "features": "off"}

    # -- the pool
    images = None
    skipped: list[tuple[str, str]] = []
    n_files = n_ignored = 0
    if is_folder:
        scan = scan_folder(input_path)
        timings["scan"] = scan.seconds
        n_files, n_ignored = scan.n, scan.n_ignored
        if scan.n == 0:
            raise SelectError(
                f"no images found in {input_path}: looked recursively for files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)} ({scan.n_ignored} other files ignored). "
                f"Point input= at a folder that contains images.")
        # Label Studio's local-files storage must be a subfolder of its document root, so
        # the root must be a strict parent of the input
        if not _is_within(input_path, document_root) or input_path == document_root:
            raise SelectError(
                f"the input folder {input_path} is not inside label_studio.document_root="
                f"{document_root}; Label Studio URLs are paths relative to it, and its "
                f"local-files storage must be a subfolder of it. Set "
                f"label_studio.document_root to a folder that contains the input folder "
                f"(the value of LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), e.g. its parent.")
        log.info("found %d image files in %s (%d other files ignored)", scan.n, input_path,
                 scan.n_ignored)
        t0 = time.perf_counter()
        key = image_cache_key(scan, size, mode, resize)
        cached = load_cached_images(cache_root, key, scan) if cache_root is not None else None
        if cached is not None:
            images, usable, skipped = cached
            cache_state["images"] = "hit"
            log.info("images: cache hit (%s)", key)
        else:
            images, usable, skipped = read_images(scan, size, mode, resize, int(num_workers),
                                                  progress=progress)
            if cache_root is not None:
                cache_state["images"] = "miss"
                save_cached_images(cache_root, key, scan, images, usable, skipped)
        timings["read"] = time.perf_counter() - t0
        if budget > len(usable):
            example = f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise SelectError(
                f"budget={budget} is larger than the number of usable images: {len(usable)} of "
                f"{scan.n} image files could be read, {len(skipped)} unreadable{example}. "
                f"Choose budget <= {len(usable)}. No output was written.")
        names = [scan.files[i] for i in usable]
        absolute = [os.fspath(scan.root / name) for name in names]
        t0 = time.perf_counter()
        flat = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
        features_path = None
        X = None
        if cache_root is not None:
            features_path = cache_root / "features" / f"{key}-{config_hash(features_config)}.npy"
            if features_path.is_file():
                try:
                    X = np.load(features_path)
                    if X.ndim != 2 or len(X) != len(flat):
                        X = None
                except (OSError, ValueError):
                    X = None
            if X is not None:
                cache_state["features"] = "hit"
                log.info("features: cache hit (%s)", features_path.name)
            else:
                cache_state["features"] = "miss"
        if X is None:
            X = _fit_features(space, flat, features_label, notes)
            if features_path is not None:
                try:
                    write_npy_atomic(features_path, X)
                except OSError as err:
                    log.warning("could not write the feature cache %s: %s", features_path, err)
        timings["features"] = time.perf_counter() - t0
        pool_images = (flat.reshape(images.shape)
                       if getattr(selector_obj, "uses_images", False) else None)
        shown_features = features_label
    else:
        t0 = time.perf_counter()
        X, file_names, name_column = load_feature_file(input_path)
        timings["read"] = time.perf_counter() - t0
        if budget > len(X):
            raise SelectError(f"budget={budget} is larger than the number of rows of "
                              f"{input_path} ({len(X)}). Choose budget <= {len(X)}.")
        names = file_names if file_names is not None else [""] * len(X)
        absolute = [""] * len(X)
        if name_column == "path":
            absolute = [os.path.normpath(p if os.path.isabs(p) else input_root / p)
                        for p in names]
            outside = [p for p in absolute if not _is_within(Path(p), document_root)]
            if outside:
                raise SelectError(
                    f"{len(outside)} path(s) of {input_path.name} (e.g. {outside[0]}) are not "
                    f"inside label_studio.document_root={document_root}. Set "
                    f"label_studio.document_root to a folder that contains them.")
        if transform_features:
            t0 = time.perf_counter()
            X = _fit_features(space, X, features_label, notes)
            timings["features"] = time.perf_counter() - t0
            shown_features = features_label
        else:
            shown_features = "the file's"
        pool_images = None
        notes.append("no contact sheet for a feature file (it holds no images)")
        if name_column != "path":
            notes.append("no label_studio.json: the feature file has no 'path' column to "
                         "build image URLs from")
        n_files = len(X)

    # -- selection
    t0 = time.perf_counter()
    pool = Pool(features=X, images=pool_images, n_classes=n_classes)
    log.info("selecting %d of %d with %s", budget, pool.n, method)
    try:
        indices = selector_obj.select(pool, budget, seed=seed)
    except ValueError as err:
        raise SelectError(f"{method}: {err}") from None
    scores = pick_scores(selector_obj, indices, pool.n)
    timings["select"] = time.perf_counter() - t0

    # -- outputs: staged beside the output folder, moved into place when all are written
    t0 = time.perf_counter()
    ranks = list(range(1, budget + 1))
    files: dict[str, Path] = {}
    summary: dict[str, Any] = {
        "input": os.fspath(input),
        "input_kind": "folder" if is_folder else "feature_file",
        "n_files": n_files,
        "n_usable": int(pool.n),
        "n_skipped": len(skipped),
        "n_ignored": n_ignored,
        "method": method,
        "selector": repr(selector_obj),
        "features": shown_features,
        "budget": budget,
        "seed": seed,
        "n_classes": n_classes,
        "image_size": list(size),
        "mode": mode,
        "resize": resize,
        "cache": cache_state,
        "selector_info": getattr(selector_obj, "info_", {}),
        "notes": notes,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    stage = staging_parent / f".{out.name}.nfpf-select-{secrets.token_hex(6)}"
    stage.mkdir()
    try:
        _write_csv(stage / "selection.csv", ["rank", "index", "path", "absolute_path", "score"],
                   ([r, int(i), names[i], absolute[i], _format_score(s)]
                    for r, i, s in zip(ranks, indices, scores, strict=True)))
        files["selection.csv"] = out / "selection.csv"
        if is_folder or absolute[0]:
            meta = {"method": method, "seed": seed, "selected_by": "nfpf-select"}
            tasks = label_studio_tasks([absolute[i] for i in indices], ranks, scores.tolist(),
                                       [names[i] for i in indices], document_root,
                                       ls_opts.url_prefix, ls_opts.image_key, meta)
            with open(stage / "label_studio.json", "w", encoding="utf-8") as handle:
                json.dump(tasks, handle, indent=1, ensure_ascii=False)
            files["label_studio.json"] = out / "label_studio.json"
        if is_folder:
            shown = indices[: int(sheet_opts.max_images)]
            if len(shown) < budget:
                notes.append(f"the contact sheet shows the first {len(shown)} of {budget} "
                             f"picks (contact_sheet.max_images)")
            write_contact_sheet(stage / "contact_sheet.png", [absolute[i] for i in shown],
                                ranks[: len(shown)], images[shown],
                                int(sheet_opts.thumb_size), sheet_opts.columns)
            files["contact_sheet.png"] = out / "contact_sheet.png"
            _write_csv(stage / "skipped.csv", ["path", "reason"], skipped)
            files["skipped.csv"] = out / "skipped.csv"
        files["summary.json"] = out / "summary.json"
        timings["write"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        summary["outputs"] = {k: os.fspath(v) for k, v in files.items()}
        with open(stage / "summary.json", "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, default=_json_default)
        _commit(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return SelectResult(output=out, files=files, summary=summary)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
