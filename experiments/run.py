"""``nfpf-run``: the Hydra entry point. Thin: compose the config, skip finished runs, call
:func:`nfpf.pipeline.run`, record failures, log to W&B.

With no arguments it runs the ``quickstart`` experiment (a multirun on digits) and prints the
summary table at the end (see :mod:`experiments.callbacks`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from experiments.sweep_validation import install as install_sweep_validation
from nfpf.api import CONFIG_DIR
from nfpf.pipeline import InfeasibleBudgetError, RunNames, failure_record, run, run_hash
from nfpf.results import FAILED_FILE, is_complete, write_json_atomic
from nfpf.utils import cpu_count, thread_limit

log = logging.getLogger("nfpf.run")

# conf/hydra/launcher/*.yaml spell out the launcher plugins' own schemas in full; Hydra's
# notice about matching them by name is not actionable for users.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema.*")

# Validate a sweep by one job per combination of config-group choices, not every job.
install_sweep_validation()


def names_from_hydra(cfg: DictConfig) -> RunNames:
    choices = HydraConfig.get().runtime.choices
    return RunNames(
        experiment=str(cfg.get("experiment_name") or choices.get("experiment") or "default"),
        dataset=str(choices.get("dataset")),
        features=str(choices.get("features")),
        selector=str(choices.get("selector")),
        classifier=str(choices.get("classifier")),
    )


def job_threads(threads: int | None, hydra_cfg: DictConfig) -> int:
    """CPU threads for this job: ``threads`` when set, else the cores divided by the number
    of jobs the launcher runs side by side (``hydra.launcher.n_jobs`` of joblib; -1 = one
    job per core), at least 1."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or null (cores / parallel "
                             f"jobs); got {threads!r}.")
        return threads
    cores = cpu_count()
    parallel = 1
    if hydra_cfg.mode == RunMode.MULTIRUN:
        n_jobs = hydra_cfg.launcher.get("n_jobs") if "launcher" in hydra_cfg else None
        if isinstance(n_jobs, int) and n_jobs != 0:
            parallel = cores if n_jobs < 0 else n_jobs
    return max(1, cores // parallel)


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: returns the test accuracy (None when skipped or failed in a sweep)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    names = names_from_hydra(cfg)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    budget = cfg.get("budget")
    if budget is None:
        budget = f"{cfg.get('budget_per_class')}/class"
    label = (f"{names.dataset}/{names.features}/{names.selector}/{names.classifier} "
             f"budget={budget} seed={cfg.seed}")

    from experiments.callbacks import report_progress

    if is_complete(output_dir, run_hash(cfg)):
        log.info("skip (already complete): %s", label)
        report_progress(output_dir, "complete")
        return None
    threads = job_threads(cfg.get("threads"), hydra_cfg)
    log.info("run: %s (%d thread%s)", label, threads, "" if threads == 1 else "s")
    try:
        with thread_limit(threads):
            record = run(cfg, names, output_dir)
    except Exception as error:
        # Sweeps over budgets per class cross datasets whose pools are too small for some:
        # with skip_infeasible_budget those runs are "skipped", not "failed".
        skipped = isinstance(error, InfeasibleBudgetError) and cfg.get("skip_infeasible_budget")
        status = "skipped" if skipped else "failed"
        write_json_atomic(output_dir / FAILED_FILE,
                          failure_record(cfg, names, error, status=status))
        if not multirun:
            raise
        if skipped:
            log.warning("skipped %s: %s", label, error)
        else:
            log.error("FAILED %s: %s: %s", label, type(error).__name__, error)
        report_progress(output_dir, status)
        return None
    metrics = record["metrics"]
    log.info("done: %s  accuracy=%.4f  classes=%d/%d  selection=%.2fs%s", label,
             metrics["accuracy"], metrics["classes_covered"], record["n_classes"],
             record["timings"]["selection"],
             " (cached)" if record["selection"]["cached"] else "")
    if cfg.get("logger"):
        tracker = instantiate(cfg.logger)
        group = f"{names.experiment}/{names.dataset}/{names.selector}/{record['budget']}"
        tracker.log_run(record, group=group, name=f"{group}/{names.classifier}/seed{cfg.seed}")
    report_progress(output_dir, "complete")
    return metrics["accuracy"]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    main()
