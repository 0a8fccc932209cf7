"""One run, as one straight line: dataset -> features -> selection -> evaluation -> record.

:func:`run` is what the Hydra entry point (``nfpf-run``) calls for each job; it knows nothing
about Hydra beyond taking an OmegaConf config. Each stage has one home:
:mod:`nfpf.data`, :mod:`nfpf.features`, the selector (:mod:`nfpf`, :mod:`baselines`),
:mod:`nfpf.evaluation.evaluate` and :mod:`nfpf.evaluation.records`.
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

from nfpf.active import ActiveStrategy, check_strategy_config, run_with_oracle
from nfpf.core.api import check_selector_options
from nfpf.core.device import compute_device
from nfpf.core.selection import RankingSelector, Selector, check_budget, check_seed
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
    "failure_record",
    "resolve_budget",
    "run",
    "run_hash",
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


def resolve_budget(budget: int | None, budget_per_class: int | None, n_classes: int) -> int:
    """The number of samples to select: ``budget``, else ``budget_per_class`` x classes.

    A count given explicitly wins over a per-class budget (so ``budget=50`` works on top of
    an experiment that sets ``budget_per_class``); one of the two must be given.
    """
    if budget is None and budget_per_class is None:
        raise ValueError(
            "No budget: give budget=<samples> or budget_per_class=<samples per class>."
        )
    if budget is not None:
        return check_budget(budget, n=np.iinfo(np.int64).max)
    per_class = check_budget(budget_per_class, n=np.iinfo(np.int64).max,
                             name="budget_per_class")
    return per_class * n_classes


def run_hash(cfg: DictConfig) -> str:
    """Hash of everything that determines a run's result (paths, logging and the thread
    count excluded: they say where and how fast a run goes)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("paths", "logger", "hydra", "threads"):
        plain.pop(key, None)
    return config_hash(plain)


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


def _plain(cfg: DictConfig | None) -> Any:
    return None if cfg is None else OmegaConf.to_container(cfg, resolve=True)


def _load_features(cfg: DictConfig, dataset: Dataset, cache_dir: Path | None):
    space = instantiate(cfg.features)
    key = config_hash({"dataset": _plain(cfg.dataset), "features": _plain(cfg.features)})
    return compute_features(space, dataset.pool_images, dataset.test_images, cache_dir, key)


def _selection_device(selector: Any) -> Any:
    """The GPU a selector with a ``device`` option will compute on, or None (the CPU)."""
    option = getattr(selector, "device", None)
    return compute_device(option, "selector.device") if isinstance(option, str) else None


def _round_model_is_classifier(strategy: ActiveStrategy, classifier: Any) -> bool:
    """Whether the run's classifier shapes an AL strategy's picks: it is the per-round model
    (no ``model`` option) and its scores are used, or it is a deep model whose embedding is
    (core-set AL on a feature classifier embeds the features as they are, no model)."""
    if strategy.model is not None or strategy.model_use is None:
        return False
    return strategy.model_use == "scores" or bool(getattr(classifier, "uses_images", False))


def _select(cfg: DictConfig, names: RunNames, dataset: Dataset, features: np.ndarray,
            budget: int, cache_dir: Path | None, classifier: Any = None,
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the selector, or reuse the cached selection of the same key.

    A selection depends only on dataset, features, selector, budget and seed, so it is
    cached under a key of exactly those and reused by every classifier. For a
    :class:`~nfpf.core.selection.RankingSelector` the cache holds the whole ranking under its
    ``ranking_key`` in place of the budget, so every budget of a sweep cuts the same one.
    A supervised AL strategy (:class:`~nfpf.active.ActiveStrategy`) queries labels through an
    oracle; when the run's classifier shapes its picks (the per-round model's scores, or a
    deep model's embedding), the classifier joins the key.
    """
    selector: Selector | ActiveStrategy = instantiate(cfg.selector)
    active = isinstance(selector, ActiveStrategy)
    if not active and not isinstance(selector, Selector):
        raise TypeError(f"selector config builds {type(selector).__name__}, not a Selector "
                        f"or an ActiveStrategy.")
    if cache_dir is not None and selector.get_params().get("memory", False) is None:
        # budget-independent work of a selector (NFPF, ProbCover, USL; nfpf/core/memo.py) is
        # shared by the budgets of a sweep; the selection does not depend on it
        selector.memory = str(Path(cache_dir) / "memory")
    n = int(features.shape[0])
    ranked = isinstance(selector, RankingSelector)
    key = config_hash({
        "dataset": _plain(cfg.dataset), "features": _plain(cfg.features),
        "selector": names.selector, "selector_config": _plain(cfg.selector),
        "budget": {"ranking": selector.ranking_key(n, budget)} if ranked else budget,
        "seed": int(cfg.seed),
        **({"round_model": _plain(cfg.classifier)}
           if active and _round_model_is_classifier(selector, classifier) else {}),
        # the GPU path's picks may differ from the CPU's: a selection made on a GPU is
        # never reused on a CPU (the CPU keys are those of before the device option)
        **({"device": gpu.type} if (gpu := _selection_device(selector)) is not None else {}),
    })
    keep = selector.labels_needed(budget, n) if active else budget
    if cache_dir is None:
        return _run_selector(cfg, selector, dataset, features, budget, None, None, classifier)
    indices_path = Path(cache_dir) / "selections" / f"{key}.npy"
    meta_path = indices_path.with_suffix(".json")
    indices_path.parent.mkdir(parents=True, exist_ok=True)
    # Parallel jobs that differ only in the classifier (or, for a ranking, the budget) wait
    # for one another instead of computing the same selection twice.
    with FileLock(str(indices_path.with_suffix(".lock"))):
        if indices_path.is_file() and meta_path.is_file():
            log.info("selection: reusing cached %s (%s)", names.selector, key)
            return np.load(indices_path)[:keep], {**read_json(meta_path), "cached": True}
        return _run_selector(cfg, selector, dataset, features, budget, indices_path,
                             meta_path, classifier)


def _run_selector(cfg: DictConfig, selector: Selector, dataset: Dataset,
                  features: np.ndarray, budget: int, indices_path: Path | None,
                  meta_path: Path | None, classifier: Any = None):
    pool = dataset.pool_view(features)  # features and images only: no labels
    start = time.perf_counter()
    labels_meta: dict[str, Any] = {}
    if isinstance(selector, ActiveStrategy):
        # supervised AL: labels only through the oracle, which counts them
        stored, labels_meta = run_with_oracle(selector, pool, budget, dataset.pool_labels,
                                              seed=int(cfg.seed), model=classifier)
    elif isinstance(selector, RankingSelector):
        stored = selector.rank(pool, budget, seed=int(cfg.seed))
    else:
        stored = selector.select(pool, budget, seed=int(cfg.seed))
    meta = {
        "seconds": time.perf_counter() - start,
        "info": getattr(selector, "info_", {}),
        "history": getattr(selector, "history_", []),
        **labels_meta,
    }
    if indices_path is not None:
        write_npy_atomic(indices_path, stored)
        write_json_atomic(meta_path, meta)
    return stored if labels_meta else stored[:budget], {**meta, "cached": False}


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
    cache_dir = Path(cfg.paths.cache_dir) if cfg.paths.get("cache_dir") else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # Validate what can be validated before loading anything.
    check_seed(cfg.get("seed"))
    resolve_budget(cfg.get("budget"), cfg.get("budget_per_class"), 1)  # no budget, bad values
    check_selector_options(names.selector, cfg.selector)
    for group in ("classifier", "features", "selector"):
        if cfg.get(group) is not None and "trainer" in cfg[group]:
            check_trainer(cfg[group].trainer, group)
    classifier = instantiate(cfg.classifier)

    dataset: Dataset = instantiate(cfg.dataset)
    if getattr(classifier, "uses_images", False) and not dataset.is_image:
        raise ValueError(
            f"classifier={names.classifier} trains on images, but dataset={names.dataset} has "
            f"feature vectors of shape {dataset.image_shape}, no images. Use a feature "
            f"classifier (classifier=linear_svc, logreg, ...) or an image dataset."
        )
    budget = resolve_budget(cfg.get("budget"), cfg.get("budget_per_class"), dataset.n_classes)
    n_pool = len(dataset.pool_labels)
    if budget > n_pool:
        raise InfeasibleBudgetError(
            f"budget={budget} is larger than the {names.dataset} pool ({n_pool} samples). "
            f"Choose budget <= {n_pool}"
            + (f" or budget_per_class <= {n_pool // dataset.n_classes}."
               if cfg.get("budget") is None else ".")
        )
    check_strategy_config(cfg.selector, budget, n_pool, classifier, int(cfg.seed))
    timings["data"] = time.perf_counter() - t0

    t = time.perf_counter()
    pool_features, test_features = _load_features(cfg, dataset, cache_dir)
    timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    indices, selection = _select(cfg, names, dataset, pool_features, budget, cache_dir,
                                 classifier)
    timings["selection"] = time.perf_counter() - t

    # Labels are read from here on, and only here (a supervised AL strategy got the ones
    # it paid for from its oracle above).
    t = time.perf_counter()
    # Deep classifiers (uses_images = True) train on the images, the others on the features.
    on_images = bool(getattr(classifier, "uses_images", False))

    def evaluate() -> dict[str, Any]:
        return evaluate_selection(
            classifier,
            dataset.pool_images if on_images else pool_features, dataset.pool_labels, indices,
            dataset.test_images if on_images else test_features, dataset.test_labels,
            dataset.n_classes)

    if selection.get("label_using") and len(indices) == n_pool and cache_dir is not None:
        metrics = _whole_pool_metrics(cfg, cache_dir, evaluate)
    else:
        metrics = evaluate()
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    record = {
        "status": "complete",
        **_keys(cfg, names, budget),
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


def _whole_pool_metrics(cfg: DictConfig, cache_dir: Path, evaluate) -> dict[str, Any]:
    """Metrics of a classifier trained on every pool label (the ``al/full`` bound), cached.

    They depend on the dataset, the features and the classifier's config (its seed included
    when it has one), not on the budget: a sweep fits the whole pool once per classifier.
    """
    key = config_hash({"dataset": _plain(cfg.dataset), "features": _plain(cfg.features),
                       "classifier": _plain(cfg.classifier)})
    path = Path(cache_dir) / "whole_pool" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.is_file():
            return read_json(path)
        metrics = evaluate()
        write_json_atomic(path, metrics)
        return metrics


def _keys(cfg: DictConfig, names: RunNames, budget: int | None) -> dict[str, Any]:
    return {
        "experiment": names.experiment,
        "dataset": names.dataset,
        "features": names.features,
        "selector": names.selector,
        "classifier": names.classifier,
        "budget": budget,
        "budget_per_class": None if cfg.get("budget") is not None
        else cfg.get("budget_per_class"),
        "seed": _recorded_seed(cfg.get("seed")),
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
        **_keys(cfg, names, cfg.get("budget")),
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
        "config": _plain(cfg),
        "config_hash": run_hash(cfg),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
