"""The files of one run (written atomically through :mod:`nfpf.io`) and the reader shared by
reports and resume.

A run directory holds, when the run finished:

- ``result.json`` -- ``status: "complete"``, the run's keys, metrics, timings, versions and the
  resolved config (schema below);
- ``indices.npy`` -- the selected indices, in selection order.

and, when the run raised, ``failed.json`` with ``status: "failed"``, the same keys, the error and
its traceback (never a ``result.json``). Every file is written to a temporary name in the same
directory and renamed into place, so a killed run never leaves a file that looks complete.

``result.json`` keys: ``status``, ``experiment``, ``dataset``, ``features``, ``selector``,
``classifier``, ``budget``, ``budget_per_class``, ``seed``, ``n_pool``, ``n_test``,
``n_classes``, ``metrics`` (``accuracy``, ``balanced_accuracy``, ``per_class_accuracy``,
``classes_covered``, ``class_histogram``), ``timings`` (seconds per phase), ``selection``
(``kind`` and ``label_using`` of the selector, :mod:`nfpf.core.protocol`; ``labels_queried``
when it queried labels; ``cached``, ``info``, ``history``, ``seconds``), ``config``,
``config_hash``, ``versions``, ``created``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from nfpf.io import read_json

log = logging.getLogger(__name__)

__all__ = [
    "FAILED_FILE",
    "INDICES_FILE",
    "RESULT_FILE",
    "RUN_KEYS",
    "find_run_files",
    "is_complete",
    "load_runs",
]

RESULT_FILE = "result.json"
FAILED_FILE = "failed.json"
INDICES_FILE = "indices.npy"

#: The keys that identify a run; report tables group by these.
RUN_KEYS = (
    "experiment",
    "dataset",
    "features",
    "selector",
    "classifier",
    "budget",
    "budget_per_class",
    "seed",
)


def is_complete(run_dir: str | os.PathLike, expected_hash: str | None = None) -> bool:
    """Whether ``run_dir`` holds a complete result (for ``expected_hash``, when given)."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file() or not (Path(run_dir) / INDICES_FILE).is_file():
        return False
    try:
        result = read_json(path)
    except (OSError, json.JSONDecodeError):
        return False
    if result.get("status") != "complete":
        return False
    return expected_hash is None or result.get("config_hash") == expected_hash


def find_run_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every ``result.json`` and ``failed.json`` below ``root``, in sorted order.

    A directory with both (a run that failed once and later completed) yields only its result.
    """
    root = Path(root)
    results = sorted(root.rglob(RESULT_FILE))
    completed_dirs = {p.parent for p in results}
    failed = [p for p in sorted(root.rglob(FAILED_FILE)) if p.parent not in completed_dirs]
    yield from sorted(results + failed)


def load_runs(root: str | os.PathLike):
    """All runs below ``root`` as a pandas DataFrame, one row per run.

    Columns: the :data:`RUN_KEYS`, ``status`` ("complete" or "failed"), ``accuracy``,
    ``balanced_accuracy``, ``best_accuracy`` (deep classifiers only), ``classes_covered``,
    ``selection_seconds``, ``error`` (failed runs) and ``run_dir``. An unreadable file is left
    out, with a warning naming it (its run is incomplete: see
    :func:`nfpf.report.collect.find_incomplete`).
    """
    import pandas as pd

    rows = []
    for path in find_run_files(root):
        try:
            record = read_json(path)
        except (OSError, json.JSONDecodeError) as exc:
            # a file cut short (a crash mid-write, a copy interrupted): the run did not finish
            log.warning("skipping %s: unreadable (%s); the run counts as incomplete", path, exc)
            continue
        metrics = record.get("metrics") or {}
        timings = record.get("timings") or {}
        row = {key: record.get(key) for key in RUN_KEYS}
        row.update(
            status=record.get("status", "failed"),
            accuracy=metrics.get("accuracy"),
            balanced_accuracy=metrics.get("balanced_accuracy"),
            best_accuracy=metrics.get("best_accuracy"),
            classes_covered=metrics.get("classes_covered"),
            selection_seconds=timings.get("selection"),
            error=record.get("error"),
            run_dir=str(path.parent),
        )
        rows.append(row)
    columns = [*RUN_KEYS, "status", "accuracy", "balanced_accuracy", "best_accuracy",
               "classes_covered",
               "selection_seconds", "error", "run_dir"]
    return pd.DataFrame(rows, columns=columns)
