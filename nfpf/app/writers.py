"""The outputs of ``nfpf-select``: selection.csv, label_studio.json, contact_sheet.png,
skipped.csv and summary.json, staged in a hidden folder beside the output and moved into
place only when all are written."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from nfpf.app.options import DEFAULT_URL_PREFIX, OUTPUT_FILES, Request
from nfpf.app.sources import Source
from nfpf.data.images import load_image
from nfpf.io import atomic_write, json_default, write_json_atomic

__all__ = ["label_studio_tasks", "write_contact_sheet", "write_outputs"]


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
            thumb = ImageOps.contain(load_image(file, "RGB", (thumb_size, thumb_size)),
                                     (thumb_size, thumb_size), Image.BILINEAR)
        except Exception:  # a file gone or changed since it was read: its decoded pixels
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
    atomic_write(path, lambda handle: sheet.save(handle, format="PNG"))
    return sheet.size


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    data = text.getvalue().encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def _format_score(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else repr(float(value))


def _any_to_json(obj: Any) -> Any:
    """:func:`nfpf.io.json_default`, with anything else (e.g. in a selector's ``info_``) as
    its ``str``."""
    try:
        return json_default(obj)
    except TypeError:
        return str(obj)


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (see :func:`_any_to_json`)."""
    return json.loads(json.dumps(obj, default=_any_to_json))


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


def _write_all(stage: Path, request: Request, source: Source, indices: np.ndarray,
               scores: np.ndarray, notes: list[str]) -> list[str]:
    """Write every output but the summary into ``stage``; return the names written."""
    ranks = list(range(1, len(indices) + 1))
    _write_csv(stage / "selection.csv", ["rank", "index", "path", "absolute_path", "score"],
               ([r, int(i), source.names[i], source.absolute[i], _format_score(s)]
                for r, i, s in zip(ranks, indices, scores, strict=True)))
    written = ["selection.csv"]
    if request.is_folder or source.absolute[0]:
        ls = request.label_studio
        meta = {"method": request.method, "seed": request.seed, "selected_by": "nfpf-select"}
        tasks = label_studio_tasks([source.absolute[i] for i in indices], ranks, scores.tolist(),
                                   [source.names[i] for i in indices], request.document_root,
                                   ls.url_prefix, ls.image_key, meta)
        data = json.dumps(tasks, indent=1, ensure_ascii=False).encode("utf-8")
        atomic_write(stage / "label_studio.json", lambda handle: handle.write(data))
        written.append("label_studio.json")
    if request.is_folder:
        sheet = request.contact_sheet
        shown = indices[: int(sheet.max_images)]
        if len(shown) < len(indices):
            notes.append(f"the contact sheet shows the first {len(shown)} of {len(indices)} "
                         f"picks (contact_sheet.max_images)")
        write_contact_sheet(stage / "contact_sheet.png", [source.absolute[i] for i in shown],
                            ranks[: len(shown)], source.images[shown], int(sheet.thumb_size),
                            sheet.columns)
        _write_csv(stage / "skipped.csv", ["path", "reason"], source.skipped)
        written += ["contact_sheet.png", "skipped.csv"]
    return written


def write_outputs(request: Request, source: Source, indices: np.ndarray, scores: np.ndarray,
                  notes: list[str],
                  finish: Callable[[dict[str, Path]], Mapping[str, Any]]) -> dict[str, Path]:
    """Write all outputs into a hidden folder beside ``request.output``, then move them in.

    ``notes`` receives the writers' notes. ``finish(files)`` returns the summary once the
    other files are written (so that it can hold their timing and paths); it is written
    last. On any error or interruption the hidden folder is removed and the output is left
    as it was.

    Returns
    -------
    dict of str to Path
        The files written, by name.
    """
    out = request.output
    stage = request.staging_parent / f".{out.name}.nfpf-select-{secrets.token_hex(6)}"
    stage.mkdir()
    try:
        names = _write_all(stage, request, source, indices, scores, notes)
        files = {name: out / name for name in [*names, "summary.json"]}
        write_json_atomic(stage / "summary.json", _jsonable(finish(files)))
        _commit(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return files
