"""One run, as one straight line: config -> dataset -> features -> selection -> evaluation ->
record.

:func:`run` is what the Hydra entry point (``nfpf-run``) calls for each job; it knows nothing
about Hydra beyond taking an OmegaConf config, which it resolves once into a :class:`RunSpec`.
Each stage has one home: :mod:`nfpf.data`, :mod:`nfpf.features`, the selector (any kind,
through the one protocol of :mod:`nfpf.core.protocol`), :mod:`nfpf.evaluation.evaluate` and
:mod:`nfpf.evaluation.records`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nfpf.core.api import build_selector
from nfpf.core.device import compute_device
from nfpf.core.protocol import SelectionPlan, SelectionRequest, plan_selection, run_selection
from nfpf.core.selection import check_budget, check_seed
from nfpf.core.trainer import check_trainer
from nfpf.data import Dataset
from nfpf.evaluation.evaluate import evaluate_selection
from nfpf.evaluation.records import FAILED_FILE, INDICES_FILE, RESULT_FILE
from nfpf.features import compute_features
from nfpf.io import (
    config_hash,
    read_json,
    remove_stale_temporaries,
    write_json_atomic,
    write_npy_atomic,
)

__all__ = [
    "InfeasibleBudgetError",
    "RunNames",
    "RunSpec",
    "failure_record",
    "resolve_budget",
    "run",
    "run_hash",
    "selection_key",
    "versions",
]

log = logging.getLogger(__name__)


class InfeasibleBudgetError(ValueError):
    """The budget asks for more samples than the dataset's pool has."""


@dataclass(frozen=True)
class RunNames:
    """The names a run is reported under: the config-group choices (YAML file names)."""

    experiment: str
    dataset: str
    features: str
    selector: str
    classifier: str


def requested_budget(budget: Any, budget_per_class: Any) -> tuple[int | None, int | None]:
    """The validated request: ``(budget, None)`` when a count is given, else
    ``(None, budget_per_class)``.

    A count given explicitly wins over a per-class budget (so ``budget=50`` works on top of
    an experiment that sets ``budget_per_class``); one of the two must be given.
    """
    if budget is None and budget_per_class is None:
        raise ValueError(
            "No budget: give budget=<samples> or budget_per_class=<samples per class>."
        )
    if budget is not None:
        return check_budget(budget, None), None
    return None, check_budget(budget_per_class, None, name="budget_per_class")


def resolve_budget(budget: Any, budget_per_class: Any, n_classes: int) -> int:
    """The number of samples to select: ``budget``, else ``budget_per_class`` x classes
    (see :func:`requested_budget`)."""
    count, per_class = requested_budget(budget, budget_per_class)
    return count if count is not None else per_class * n_classes


def _plain(cfg: DictConfig | None) -> Any:
    return None if cfg is None else OmegaConf.to_container(cfg, resolve=True)


@dataclass(frozen=True)
class RunSpec:
    """A run's config resolved once into the typed values the run uses.

    Attributes
    ----------
    names : RunNames
    seed : int
        The selection seed (:func:`nfpf.core.selection.check_seed`).
    budget, budget_per_class : int or None
        The budget asked for: a count, or (when no count is given) a count per class.
    cache_dir : Path or None
        Where features, selections and whole-pool metrics are cached (None: no cache).
    dataset, features, selector, classifier : dict or None
        The groups' resolved configs, as the cache keys and the record hold them.
    """

    names: RunNames
    seed: int
    budget: int | None
    budget_per_class: int | None
    cache_dir: Path | None
    dataset: Any
    features: Any
    selector: Any
    classifier: Any

    @classmethod
    def from_config(cls, cfg: DictConfig, names: RunNames) -> RunSpec:
        """Check everything that needs no data (seed, budget, trainers) and resolve ``cfg``."""
        seed = check_seed(cfg.get("seed"))
        budget, per_class = requested_budget(cfg.get("budget"), cfg.get("budget_per_class"))
        for group in ("classifier", "features", "selector"):
            if cfg.get(group) is not None and "trainer" in cfg[group]:
                check_trainer(cfg[group].trainer, group)
        cache_dir = cfg.paths.get("cache_dir")
        return cls(names=names, seed=seed, budget=budget, budget_per_class=per_class,
                   cache_dir=Path(cache_dir) if cache_dir else None,
                   dataset=_plain(cfg.dataset), features=_plain(cfg.features),
                   selector=_plain(cfg.selector), classifier=_plain(cfg.get("classifier")))

    def budget_for(self, n_classes: int) -> int:
        """The number of samples to select from a dataset of ``n_classes`` classes."""
        return self.budget if self.budget is not None else self.budget_per_class * n_classes


def run_hash(cfg: DictConfig) -> str:
    """Hash of everything that determines a run's result (paths, logging and the thread
    count excluded: they say where and how fast a run goes)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("paths", "logger", "hydra", "threads"):
        plain.pop(key, None)
    return config_hash(plain)


def selection_key(spec: RunSpec, plan: SelectionPlan, gpu: Any = None) -> str:
    """The key a selection is cached under: what it depends on, and nothing else.

    Dataset, features, selector (name and config), the seed and the plan's budget key (a
    ranking's key in place of the budget, so that every budget of a sweep cuts one
    ranking); the run's classifier when it shapes the picks (a supervised strategy's
    per-round model); the device type of a selection made on a GPU, whose picks may differ
    from the CPU's (a CPU selection's key has no device: the keys of before the option).
    """
    return config_hash({
        "dataset": spec.dataset, "features": spec.features,
        "selector": spec.names.selector, "selector_config": spec.selector,
        "budget": plan.budget_key, "seed": spec.seed,
        **({"round_model": spec.classifier} if plan.uses_run_model else {}),
        **({"device": gpu.type} if gpu is not None else {}),
    })


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import hydra
    import pytorch_lightning
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "nfpf": importlib.metadata.version("nfpf"),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "pytorch-lightning": pytorch_lightning.__version__,
        "hydra": hydra.__version__,
    }


def _load_features(cfg: DictConfig, spec: RunSpec, dataset: Dataset):
    space = instantiate(cfg.features)
    key = config_hash({"dataset": spec.dataset, "features": spec.features})
    return compute_features(space, dataset.pool_images, dataset.test_images, spec.cache_dir,
                            key)


def _selection_device(selector: Any) -> Any:
    """The GPU a selector with a ``device`` option will compute on, or None (the CPU)."""
    option = getattr(selector, "device", None)
    return compute_device(option, "selector.device") if isinstance(option, str) else None


def _feasible_budget(spec: RunSpec, dataset: Dataset) -> int:
    """The run's budget on ``dataset``; refused when the pool is smaller."""
    budget = spec.budget_for(dataset.n_classes)
    n_pool = len(dataset.pool_labels)
    if budget > n_pool:
        raise InfeasibleBudgetError(
            f"budget={budget} is larger than the {spec.names.dataset} pool ({n_pool} samples). "
            f"Choose budget <= {n_pool}"
            + (f" or budget_per_class <= {n_pool // dataset.n_classes}."
               if spec.budget is None else ".")
        )
    return budget


def _select(spec: RunSpec, selector: Any, plan: SelectionPlan, dataset: Dataset,
            features: np.ndarray, budget: int, classifier: Any,
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the selector, or reuse the cached selection of the same :func:`selection_key`.

    A selection depends only on what its key holds, so it is computed once and reused by
    every classifier (and, for a ranking, every budget of the same key). Parallel jobs that
    share a key wait for one another instead of computing the same selection twice.
    """
    if spec.cache_dir is None:
        return _run_selector(spec, selector, plan, dataset, features, budget, classifier)
    if selector.get_params().get("memory", False) is None:
        # budget-independent work of a selector (NFPF, ProbCover, USL; nfpf/core/memo.py) is
        # shared by the budgets of a sweep; the selection does not depend on it
        selector.memory = str(spec.cache_dir / "memory")
    key = selection_key(spec, plan, _selection_device(selector))
    indices_path = spec.cache_dir / "selections" / f"{key}.npy"
    meta_path = indices_path.with_suffix(".json")
    indices_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(indices_path.with_suffix(".lock"))):
        if indices_path.is_file() and meta_path.is_file():
            log.info("selection: reusing cached %s (%s)", spec.names.selector, key)
            return np.load(indices_path)[:plan.picks], {
                **read_json(meta_path), **_kind_record(plan), "cached": True}
        return _run_selector(spec, selector, plan, dataset, features, budget, classifier,
                             indices_path, meta_path)


def _kind_record(plan: SelectionPlan) -> dict[str, Any]:
    """What a run records of its selector's kind (the reports mark label-using rows)."""
    return {"kind": plan.kind.name, "label_using": plan.kind.label_using}


def _run_selector(spec: RunSpec, selector: Any, plan: SelectionPlan, dataset: Dataset,
                  features: np.ndarray, budget: int, classifier: Any,
                  indices_path: Path | None = None, meta_path: Path | None = None,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    pool = dataset.pool_view(features)  # features and images only: no labels
    # the labels go only to a selection that queries them, through its oracle
    request = SelectionRequest(pool, budget, spec.seed, model=classifier,
                               labels=dataset.pool_labels if plan.labels else None)
    start = time.perf_counter()
    result = run_selection(selector, request, plan)
    meta = {
        "seconds": time.perf_counter() - start,
        **_kind_record(plan),
        "info": result.info,
        "history": result.history,
        **({"labels_queried": result.queries} if result.queries is not None else {}),
    }
    if indices_path is not None:
        write_npy_atomic(indices_path, result.stored)
        write_json_atomic(meta_path, meta)
    return result.indices, {**meta, "cached": False}


def run(cfg: DictConfig, names: RunNames, output_dir: str | Path) -> dict[str, Any]:
    """Run one (dataset, features, selector, budget, seed, classifier) job.

    Writes ``indices.npy`` and then ``result.json`` into ``output_dir`` (atomically) and
    returns the result record. Bad input raises ``ValueError`` before any selection work.
    No other process may write into ``output_dir`` meanwhile (``nfpf-run`` holds the run's
    lock): the temporary files of an earlier attempt killed mid-write are deleted first.
    """
    output_dir = Path(output_dir)
    if output_dir.is_dir():
        remove_stale_temporaries(output_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # Validate what can be validated before loading anything.
    spec = RunSpec.from_config(cfg, names)
    selector = build_selector(cfg.selector, names.selector)
    classifier = instantiate(cfg.classifier)

    dataset: Dataset = instantiate(cfg.dataset)
    if getattr(classifier, "uses_images", False) and not dataset.is_image:
        raise ValueError(
            f"classifier={names.classifier} trains on images, but dataset={names.dataset} has "
            f"feature vectors of shape {dataset.image_shape}, no images. Use a feature "
            f"classifier (classifier=linear_svc, logreg, ...) or an image dataset."
        )
    budget = _feasible_budget(spec, dataset)
    n_pool = len(dataset.pool_labels)
    # the selector's own bad-input errors (rounds, initial set, per-round model...)
    plan = plan_selection(selector, n_pool, budget, spec.seed, classifier)
    timings["data"] = time.perf_counter() - t0

    t = time.perf_counter()
    pool_features, test_features = _load_features(cfg, spec, dataset)
    timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    indices, selection = _select(spec, selector, plan, dataset, pool_features, budget,
                                 classifier)
    timings["selection"] = time.perf_counter() - t

    # Labels are read from here on, and only here (a selection that queries labels got the
    # ones it paid for from its oracle above).
    t = time.perf_counter()
    # Deep classifiers (uses_images = True) train on the images, the others on the features.
    on_images = bool(getattr(classifier, "uses_images", False))

    def evaluate() -> dict[str, Any]:
        return evaluate_selection(
            classifier,
            dataset.pool_images if on_images else pool_features, dataset.pool_labels, indices,
            dataset.test_images if on_images else test_features, dataset.test_labels,
            dataset.n_classes)

    if selection.get("labels_queried") == n_pool and spec.cache_dir is not None:
        metrics = _whole_pool_metrics(spec, evaluate)
    else:
        metrics = evaluate()
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    record = {
        "status": "complete",
        **_keys(names, budget, spec.budget_per_class, spec.seed),
        "n_pool": n_pool,
        "n_test": len(dataset.test_labels),
        "n_classes": dataset.n_classes,
        "metrics": metrics,
        "timings": timings,
        "selection": selection,
        "config": _plain(cfg),
        "config_hash": run_hash(cfg),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_npy_atomic(output_dir / INDICES_FILE, indices)
    write_json_atomic(output_dir / RESULT_FILE, record)
    (output_dir / FAILED_FILE).unlink(missing_ok=True)
    return record


def _whole_pool_metrics(spec: RunSpec, evaluate) -> dict[str, Any]:
    """Metrics of a classifier trained on every pool label (the ``al/full`` bound), cached.

    They depend on the dataset, the features and the classifier's config (its seed included
    when it has one), not on the budget: a sweep fits the whole pool once per classifier.
    """
    key = config_hash({"dataset": spec.dataset, "features": spec.features,
                       "classifier": spec.classifier})
    path = spec.cache_dir / "whole_pool" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.is_file():
            return read_json(path)
        metrics = evaluate()
        write_json_atomic(path, metrics)
        return metrics


def _keys(names: RunNames, budget: Any, budget_per_class: Any, seed: Any) -> dict[str, Any]:
    return {
        "experiment": names.experiment,
        "dataset": names.dataset,
        "features": names.features,
        "selector": names.selector,
        "classifier": names.classifier,
        "budget": budget,
        "budget_per_class": budget_per_class,
        "seed": seed,
    }


def _recorded_seed(seed: Any) -> Any:
    """The seed as a record holds it: an int when valid, else as given (a run that failed
    on a bad seed records that seed)."""
    try:
        return check_seed(seed)
    except ValueError:
        return seed


def failure_record(cfg: DictConfig, names: RunNames, error: BaseException,
                   status: str = "failed") -> dict[str, Any]:
    """What ``failed.json`` holds for a run that raised (``status`` "failed" or "skipped")."""
    return {
        "status": status,
        **_keys(names, cfg.get("budget"),
                None if cfg.get("budget") is not None else cfg.get("budget_per_class"),
                _recorded_seed(cfg.get("seed"))),
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
        "config": _plain(cfg),
        "config_hash": run_hash(cfg),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
