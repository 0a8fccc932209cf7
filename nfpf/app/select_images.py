"""Choose which of your own images to label: the library behind ``nfpf-select``.

:func:`select_images` takes a folder of unlabeled images (nested folders allowed) or a feature
file (``.npy``, ``.csv``, ``.parquet``), a budget B, a selector and a feature space, and writes
into one output folder:

- ``selection.csv`` -- the B picks: ``rank`` (1 = chosen first), ``index`` (into the usable
  images in sorted path order, or the feature file's row), ``path`` (relative to the input
  folder), ``absolute_path`` and ``score`` (the selector's own score of that pick when it
  exposes one, else empty);
- ``label_studio.json`` -- a Label Studio task list (see
  :func:`nfpf.app.writers.label_studio_tasks`);
- ``contact_sheet.png`` -- the picks as a grid of thumbnails labelled with their rank;
- ``skipped.csv`` -- unreadable image files and the reason (``path``, ``reason``);
- ``summary.json`` -- counts, options, cache use, timings.

It runs the app's stages in order: :mod:`~nfpf.app.options` (every check that needs no
reading), :mod:`~nfpf.app.sources` (the folder or feature file, with the decoded-image
cache), :mod:`~nfpf.app.features`, :mod:`~nfpf.app.selection` and
:mod:`~nfpf.app.writers`. Every check that can fail on the user's input runs before any
expensive work, and all outputs are written into a hidden temporary folder beside the output
and moved into place only when all of them are complete, so an error or an interruption
never leaves a partial output. The input folder is only read. See ``docs/select.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nfpf.app.features import Features, source_features
from nfpf.app.options import (
    ContactSheetOptions,
    ImageOptions,
    LabelStudioOptions,
    Request,
    SelectError,
    check_request,
)
from nfpf.app.selection import run_selection
from nfpf.app.sources import Source, read_source
from nfpf.app.writers import write_outputs
from nfpf.core.selection import Selector
from nfpf.features import FeatureSpace

# SelectError is re-exported: callers catch it where they call select_images
__all__ = ["SelectError", "SelectResult", "select_images"]


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


def _summary(request: Request, source: Source, features: Features) -> dict[str, Any]:
    """The summary's counts and options (timings and outputs are added when written)."""
    opts = request.images
    return {
        "input": request.input,
        "input_kind": "folder" if request.is_folder else "feature_file",
        "n_files": source.n_files,
        "n_usable": source.n,
        "n_skipped": len(source.skipped),
        "n_ignored": source.n_ignored,
        "method": request.method,
        "selector": repr(request.selector),
        "features": features.shown,
        "budget": request.budget,
        "seed": request.seed,
        "n_classes": request.n_classes,
        "image_size": list(opts.size),
        "mode": opts.mode,
        "resize": opts.resize,
        "cache": {"dir": None if request.cache_dir is None else str(request.cache_dir),
                  "images": source.images_cache, "features": features.cache},
        "selector_info": getattr(request.selector, "info_", {}),
        "notes": features.notes + _source_notes(source),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _source_notes(source: Source) -> list[str]:
    if source.images is not None:
        return []
    notes = ["no contact sheet for a feature file (it holds no images)"]
    if source.name_column != "path":
        notes.append("no label_studio.json: the feature file has no 'path' column to build "
                     "image URLs from")
    return notes


def select_images(
    input: str | os.PathLike,
    budget: int,
    output: str | os.PathLike,
    *,
    selector: str | Mapping[str, Any] | Selector = "nfpf",
    features: str | Mapping[str, Any] | FeatureSpace = "pca",
    selector_name: str | None = None,
    features_name: str | None = None,
    images: ImageOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    n_classes: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    transform_features: bool = False,
    label_studio: LabelStudioOptions | Mapping[str, Any] | None = None,
    contact_sheet: ContactSheetOptions | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> SelectResult:
    """Choose ``budget`` images of a folder (or rows of a feature file) to label.

    Parameters
    ----------
    input : path
        A folder of images (searched recursively; see :mod:`nfpf.app.folder` for which files
        and :mod:`nfpf.data.images` for how they are decoded) or a feature file (.npy n×d;
        .csv/.parquet with numeric columns and an optional ``path`` or ``id`` column naming
        the rows).
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
    images : ImageOptions or mapping, optional
        How a folder's images are decoded: ``image_size`` (default 32: every image is resized
        to it before computing features; an int or (height, width)), ``mode`` ("RGB" or "L"),
        ``resize`` ("stretch", "center_crop" or "pad") and ``num_workers`` (decoding
        threads, default 4).
    seed : int, default 0
        Seed of the selection; the same inputs and seed give the same picks.
    n_classes : int, optional
        Expected number of classes, if known (NFPF's seeding K-means uses it).
    cache : bool, default True
        Cache decoded images and features (folders only).
    cache_dir : path, optional
        Cache location; default :func:`nfpf.app.options.default_cache_dir`. Must not be
        inside the input.
    overwrite : bool, default False
        Allow an existing non-empty output folder: nfpf-select's files in it are replaced
        (stale ones removed), other files are kept.
    transform_features : bool, default False
        Feature files only: pass the vectors through ``features`` (fitted on them) instead of
        using them as they are.
    label_studio : LabelStudioOptions or mapping, optional
        ``url_prefix`` (default ``"/data/local-files/?d="``), ``document_root`` (default: the
        folder that contains the input folder) and ``image_key`` (default ``"image"``).
    contact_sheet : ContactSheetOptions or mapping, optional
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
    start = time.perf_counter()
    request = check_request(
        input, budget, output, selector=selector, features=features,
        selector_name=selector_name, features_name=features_name, images=images, seed=seed,
        n_classes=n_classes, cache=cache, cache_dir=cache_dir, overwrite=overwrite,
        transform_features=transform_features, label_studio=label_studio,
        contact_sheet=contact_sheet, progress=progress)
    timings = {"setup": time.perf_counter() - start}
    source = read_source(request)
    timings.update(source.timings)
    t0 = time.perf_counter()
    feats = source_features(request, source)
    if request.is_folder or request.transform_features:
        timings["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    indices, scores = run_selection(request, feats)
    timings["select"] = time.perf_counter() - t0
    summary = _summary(request, source, feats)
    t0 = time.perf_counter()

    def finish(files: dict[str, Path]) -> dict[str, Any]:
        timings["write"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        summary["outputs"] = {k: os.fspath(v) for k, v in files.items()}
        return summary

    files = write_outputs(request, source, indices, scores, summary["notes"], finish)
    return SelectResult(output=request.output, files=files, summary=summary)
