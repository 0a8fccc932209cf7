"""Experiment tracking: W&B, offline unless the user has logged in (or asks for online)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["WandbLogger", "log_report", "resolve_wandb_mode"]

log = logging.getLogger(__name__)


def resolve_wandb_mode(mode: str | None = None) -> str:
    """``mode`` if given; else ``$WANDB_MODE``; else "online" with an API key, "offline" without.

    An API key counts when ``WANDB_API_KEY`` is set or ``wandb login`` stored one in ~/.netrc.
    """
    if mode:
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


class WandbLogger:
    """Logs one run's config, metrics and selection statistics to W&B.

    Parameters
    ----------
    project : str
    entity : str, optional
    mode : {"online", "offline", "disabled"}, optional
        ``None`` picks offline unless the user has logged in (:func:`resolve_wandb_mode`).
    dir : path
        Where W&B writes its run directories (offline runs can be synced later with
        ``wandb sync DIR/wandb/offline-run-*``).
    tags : list of str
    settings : dict, optional
        Extra ``wandb.Settings`` fields, e.g. ``{"x_save_requirements": False}`` (conf/logger/
        wandb.yaml turns off the per-run package list and system-metrics sampling: a sweep
        of thousands of sub-second runs would otherwise spend most of its time on them).
    """

    def __init__(self, project: str = "nfpf", entity: str | None = None,
                 mode: str | None = None, dir: str = "outputs/wandb",
                 tags: list[str] | None = None, settings: dict[str, Any] | None = None):
        self.project = project
        self.entity = entity
        self.mode = mode
        self.dir = dir
        self.tags = list(tags or [])
        self.settings = dict(settings or {})

    def log_run(self, record: dict[str, Any], group: str, name: str) -> str | None:
        """Log a finished run (a ``result.json`` record); return the W&B run directory."""
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        mode = resolve_wandb_mode(self.mode)
        run = wandb.init(
            project=self.project, entity=self.entity, mode=mode, dir=self.dir, group=group,
            name=name, job_type=record.get("selector"), tags=self.tags,
            config={k: record.get(k) for k in ("experiment", "dataset", "features", "selector",
                                               "classifier", "budget", "budget_per_class",
                                               "seed")} | {"full": record.get("config")},
            reinit="finish_previous", settings=wandb.Settings(**self.settings),
        )
        metrics = record["metrics"]
        run.log({
            "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"],
            "classes_covered": metrics["classes_covered"],
            **{f"time/{k}": v for k, v in record.get("timings", {}).items()},
        })
        run.summary["class_histogram"] = metrics["class_histogram"]
        run.summary["per_class_accuracy"] = metrics["per_class_accuracy"]
        run_dir = str(Path(run.dir).parent)
        run.finish()
        log.info("wandb (%s): %s", mode, run_dir)
        return run_dir


def log_report(tables: dict[str, Any], images: dict[str, Any], *, project: str = "nfpf",
               entity: str | None = None, mode: str | None = None, dir: str = "outputs",
               name: str | None = None, summary: dict[str, Any] | None = None) -> str:
    """Log a report's tables and figures to one W&B run (``job_type="report"``).

    Parameters
    ----------
    tables : dict name -> pandas DataFrame
        Logged as ``wandb.Table`` under ``tables/<name>``.
    images : dict name -> path of a PNG
        Logged as ``wandb.Image`` under ``figures/<name>``.
    mode : {"online", "offline", "disabled"}, optional
        ``None`` picks offline unless the user has logged in (:func:`resolve_wandb_mode`).
    dir : path
        Where W&B writes its run directory.
    summary : dict, optional
        Scalars put in the run summary (e.g. run counts).

    Returns
    -------
    str
        The W&B run directory (``.../wandb/offline-run-*`` offline).
    """
    import wandb

    Path(dir).mkdir(parents=True, exist_ok=True)
    mode = resolve_wandb_mode(mode)
    run = wandb.init(project=project, entity=entity, mode=mode, dir=dir, name=name,
                     job_type="report", reinit="finish_previous")
    payload: dict[str, Any] = {f"tables/{key}": wandb.Table(dataframe=frame)
                               for key, frame in tables.items()}
    payload.update({f"figures/{key}": wandb.Image(str(path)) for key, path in images.items()})
    run.log(payload)
    for key, value in (summary or {}).items():
        run.summary[key] = value
    run_dir = str(Path(run.dir).parent)
    run.finish()
    log.info("wandb report (%s): %s", mode, run_dir)
    return run_dir
