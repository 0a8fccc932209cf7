"""What ``nfpf-run``'s SLURM launcher adds to submitit's: complete runs skipped before
submission, arrays no larger than the cluster allows, and jobs that end without a result
(cancelled, killed, timed out, or lost with no ``sacct`` to say so) recorded as failed runs
instead of an exception or an endless wait.

The launcher class itself lives in ``hydra_plugins.nfpf_launchers.slurm`` (Hydra loads
launchers only from the ``hydra_plugins`` package).
"""

from __future__ import annotations

import copy
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from nfpf.cli.sweep_validation import signature
from nfpf.evaluation.records import FAILED_FILE, RESULT_FILE, is_complete
from nfpf.io import write_json_atomic

log = logging.getLogger("nfpf.slurm")

#: SLURM's default ``MaxArraySize``: an array holds at most this many tasks.
DEFAULT_MAX_ARRAY_SIZE = 1001

#: A composed job config, from its override list.
Compose = Callable[[Sequence[str]], DictConfig]


class JobLostError(RuntimeError):
    """A SLURM job ended without writing a result (cancelled, killed, out of time or memory)."""


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (``scontrol show config``), SLURM's default when
    ``scontrol`` cannot say."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return DEFAULT_MAX_ARRAY_SIZE


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into consecutive pieces of at most ``size``."""
    if size < 1:
        raise ValueError(f"hydra.launcher.max_array_size must be a positive integer; got "
                         f"{size!r}.")
    return [items[start:start + size] for start in range(0, len(items), size)]


def run_dir_of(job_cfg: DictConfig) -> Path:
    """The directory a composed sweep job writes its run to."""
    return Path(job_cfg.hydra.sweep.dir) / str(job_cfg.hydra.sweep.subdir)


def complete_runs_by_overrides(sweep_dir: Path, output_subdir: str | None) -> dict:
    """Run directories below ``sweep_dir`` holding a ``result.json``, keyed by the sorted
    overrides Hydra saved with them (``<run>/<output_subdir>/overrides.yaml``)."""
    found: dict[tuple[str, ...], Path] = {}
    if output_subdir is None or not sweep_dir.is_dir():
        return found
    for result in sweep_dir.rglob(RESULT_FILE):
        saved = result.parent / output_subdir / "overrides.yaml"
        try:
            overrides = yaml.safe_load(saved.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(overrides, list):
            found[tuple(sorted(map(str, overrides)))] = result.parent
    return found


def with_plain_overrides(base: DictConfig, overrides: Sequence[str],
                          groups: set[str]) -> DictConfig | None:
    """``base`` (a job composed with the same config-group choices and overridden keys)
    with the values of ``overrides`` set, as Hydra sets ``key=value`` overrides after
    merging the config files; None when an override is more than a plain scalar or list
    assignment (the job is then composed in full)."""
    job = copy.deepcopy(base)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.key_or_group.replace(".", "/") in groups:
            continue  # the same choice as base's (it is part of the signature)
        value = override.value()
        if (override.is_delete() or override.is_add() or override.is_force_add()
                or override.package is not None or isinstance(value, dict)):
            return None
        OmegaConf.update(job, override.key_or_group, value, merge=True)
    return job


def split_complete(jobs: Sequence[tuple[int, Sequence[str]]], sweep_dir: Path,
                   output_subdir: str | None, compose: Compose,
                   groups: set[str]) -> tuple[list, list]:
    """``jobs`` (index, overrides) split into (complete, to submit).

    A job is complete when its run directory holds a result whose config hash is the job's.
    Only jobs with a result on disk are checked; one job per combination of config-group
    choices and overridden keys is composed in full (about 0.2 s each), the others of the
    combination are that config with their own values set, which is what Hydra's
    composition gives (tested against full composition).
    """
    from nfpf.evaluation.pipeline import run_hash

    on_disk = complete_runs_by_overrides(sweep_dir, output_subdir)
    composed: dict[tuple[str, ...], DictConfig] = {}
    complete, todo = [], []
    for index, overrides in jobs:
        run_dir = on_disk.get(tuple(sorted(overrides)))
        if run_dir is None:
            todo.append((index, overrides))
            continue
        key = signature(overrides, groups)
        if key not in composed:
            composed[key] = compose(overrides)
        job_cfg = with_plain_overrides(composed[key], overrides, groups)
        if job_cfg is None:
            job_cfg = compose(overrides)
        task_cfg = task_config(job_cfg)
        (complete if is_complete(run_dir, run_hash(task_cfg)) else todo).append(
            (index, overrides))
    return complete, todo


def task_config(job_cfg: DictConfig) -> DictConfig:
    """A composed job's config as its task function receives it (without ``hydra``)."""
    task = copy.deepcopy(job_cfg)
    with open_dict(task):
        task.pop("hydra", None)
    return task


def queued_job_ids() -> set[str] | None:
    """Ids of this user's jobs SLURM still knows as pending, running or completing, one
    per array task (``123_4``); None when ``squeue`` does not answer."""
    try:
        out = subprocess.run(["squeue", "--me", "--noheader", "--array", "--format=%i"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in out.splitlines() if line.strip()}


def controller_state(job_id: str) -> str | None:
    """A job's state as the controller still remembers it (``MinJobAge`` after its end),
    e.g. ``CANCELLED``: also for array tasks cancelled while pending, which ``sacct`` does
    not list; None when ``scontrol`` does not know it."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for field_ in out.split():
        key, _, value = field_.partition("=")
        if key == "JobState":
            return value
    return None


@dataclass
class Submitted:
    """One submitted run: its sweep index, overrides and submitit job."""

    index: int
    overrides: Sequence[str]
    job: Any
    #: When the job was first seen neither done nor in the queue (``time.monotonic()``).
    missing_since: float | None = field(default=None)


def sacct_available() -> bool:
    """Whether ``sacct`` answers (the cluster keeps accounting)."""
    try:
        return subprocess.run(["sacct", "--noheader", "--jobs", "1"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def wait_for(submitted: list[Submitted], lost_after_s: float, poll_s: float,
             on_lost: Callable[[Submitted, str], JobReturn],
             sacct: bool = True) -> dict[int, JobReturn]:
    """Each run's JobReturn once every job ended.

    A job that ends without a result (its ``results()`` raises: cancelled, failed, out of
    time), or that stays out of ``squeue`` without a result for ``lost_after_s`` (SLURM
    without accounting, where submitit cannot learn its state), is passed to ``on_lost``.
    Without ``sacct`` a job is done when its result file exists: submitit's state queries
    would only fail (and print their failure at every poll).
    """

    def done(run: Submitted, force: bool = False) -> bool:
        if sacct:
            return run.job.done(force_check=force)
        return run.job.paths.result_pickle.exists()

    returns: dict[int, JobReturn] = {}
    pending = list(submitted)
    while pending:
        waiting = []
        for run in pending:
            if done(run):
                returns[run.index] = _outcome(run, on_lost)
            else:
                waiting.append(run)
        pending = waiting
        if not pending:
            break
        queued = queued_job_ids()
        now = time.monotonic()
        still = []
        for run in pending:
            if queued is None or run.job.job_id in queued:
                run.missing_since = None
            elif run.missing_since is None:
                run.missing_since = now
            elif now - run.missing_since >= lost_after_s:
                # ask sacct now (submitit asks at most once a minute)
                if done(run, force=True):
                    returns[run.index] = _outcome(run, on_lost)
                else:
                    state = (controller_state(run.job.job_id)
                             or (run.job.state if sacct else "UNKNOWN"))
                    returns[run.index] = on_lost(run, f"{state}, not in squeue")
                continue
            still.append(run)
        pending = still
        if pending:
            time.sleep(poll_s)
    return returns


def _outcome(run: Submitted, on_lost: Callable[[Submitted, str], JobReturn]) -> JobReturn:
    try:
        return run.job.results()[0]
    except Exception as error:  # any job without a result is a lost run
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        return on_lost(run, f"{run.job.state}: {reason}")


def record_lost(job_cfg: DictConfig, job_id: str, state: str, log_file: Path) -> Path:
    """Write ``failed.json`` for a run whose SLURM job ended without a result (unless the
    run completed after all); returns the run's directory."""
    from nfpf.cli.callbacks import names_from_hydra, report_progress
    from nfpf.evaluation.pipeline import failure_record

    run_dir = run_dir_of(job_cfg)
    if (run_dir / RESULT_FILE).is_file():
        return run_dir
    error = JobLostError(f"SLURM job {job_id} ended without a result ({state}); its log: "
                         f"{log_file}")
    task_cfg = task_config(job_cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / FAILED_FILE,
                      failure_record(task_cfg, names_from_hydra(task_cfg, job_cfg.hydra), error))
    report_progress(run_dir, "failed")
    log.error("FAILED %s: %s", run_dir.name, error)
    return run_dir


def skipped_return(overrides: Sequence[str]) -> JobReturn:
    """The JobReturn of a run skipped before submission (complete) or recorded as lost."""
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                     _return_value=None)
