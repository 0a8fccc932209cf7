"""``nfpf-run``: the Hydra entry point. Thin: compose the config, skip finished runs, call
:func:`nfpf.evaluation.pipeline.run`, record failures, log to W&B.

With no arguments it runs the ``quickstart`` experiment (a multirun on digits) and prints the
summary table at the end (see :mod:`nfpf.cli.callbacks`).

Exit status (README, "Exit codes"): 0 when every run is complete (or skipped by
``skip_infeasible_budget``); 1 when a run failed (a sweep still finishes and writes its
report first) or on an unexpected error; 2 when the command line or a config value was
rejected (one line on stderr naming the key); 130 on Ctrl-C. ``-v`` shows the launchers' job
lists; ``--debug`` (or ``HYDRA_FULL_ERROR=1``) shows tracebacks for every error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import hydra
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from hydra_plugins.nfpf_launchers.slurm import register_schema as register_slurm_schema
from hydra_plugins.nfpf_sweepers.representative import register as register_sweeper
from nfpf.cli.callbacks import SESSION, names_from_hydra, sweep_counts
from nfpf.cli.exit_codes import (
    EXIT_FAILED,
    EXIT_USAGE,
    call_hydra_main,
    mark_command_line_accepted,
)
from nfpf.core.api import CONFIG_SEARCH_PATH
from nfpf.core.resources import cpu_count, thread_limit
from nfpf.data import DatasetNotFoundError
from nfpf.evaluation.pipeline import (
    InfeasibleBudgetError,
    RunNames,
    failure_record,
    run,
    run_hash,
)
from nfpf.evaluation.records import FAILED_FILE, is_complete
from nfpf.io import write_json_atomic

log = logging.getLogger("nfpf.run")

#: Set by ``nfpf-run`` to its process id: a job running in a process whose parent has this
#: id is a launcher's worker (joblib, submitit local), which must not outlive ``nfpf-run``.
PARENT_PID_ENV = "NFPF_RUN_PID"

#: Held by the process running a run, in the run's directory: a second sweep on the same
#: output directory waits for it and then skips the run instead of computing it again.
RUN_LOCK = ".run.lock"

# conf/hydra/launcher/*.yaml spell out the launcher plugins' own schemas in full; Hydra's
# notice about matching them by name is not actionable for users. The message starts with a
# newline, hence DOTALL.
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema")
# `-m` on a single-run experiment is how a user asks for a sweep; the notice that it switches
# hydra.mode says nothing more.
warnings.filterwarnings("ignore", message="(?s).*Running Hydra app with --multirun")

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


def user_error(error: BaseException) -> str | None:
    """The one-line message of a user error (a bad config value: ``ValueError``; a dataset
    not found; a config Hydra could not instantiate with the given keys), None for anything
    else (a bug: its traceback is shown)."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        if isinstance(error.__cause__, TypeError):  # e.g. an unexpected keyword argument
            return str(error).splitlines()[0].rstrip(":") + f": {error.__cause__}"
        error = error.__cause__
    if isinstance(error, ValueError | DatasetNotFoundError):
        return " ".join(str(error).split())
    return None


def _exit_with_parent(parent: int) -> None:
    """Exit this worker as soon as its parent ``nfpf-run`` is gone (killed by SIGKILL, it
    cannot stop its workers itself); the run in progress is abandoned, leaving no result."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(EXIT_FAILED)


def _as_worker() -> None:
    """In a launcher's worker process: exit with the parent, and leave Ctrl-C to the parent
    (which stops the workers), so that one Ctrl-C prints one line and no worker traceback."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or int(parent) == os.getpid() or os.getppid() != int(parent):
        return  # nfpf-run itself, or a job started elsewhere (e.g. on a SLURM node)
    if not any(t.name == "nfpf-parent-watch" for t in threading.enumerate()):
        threading.Thread(target=_exit_with_parent, args=(int(parent),),
                         name="nfpf-parent-watch", daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: returns the test accuracy (None when skipped or failed in a sweep).

    The run's directory is locked while the job runs, so that two sweeps on one output
    directory never compute the same run twice: the second waits, then skips it.
    """
    mark_command_line_accepted()
    _as_worker()
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output_dir / RUN_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another nfpf-run process that is running %s", output_dir)
        lock.acquire()
    try:
        return _run_locked(cfg, output_dir)
    finally:
        lock.release()
        # A finished run's lock goes. Safe: a process still waiting on the removed file,
        # or one that creates it anew, finds the run complete and skips it. A failed run
        # keeps its lock, as the rerun that computes it again takes it.
        if is_complete(output_dir, run_hash(cfg)):
            Path(lock.lock_file).unlink(missing_ok=True)


def _run_locked(cfg: DictConfig, output_dir: Path) -> float | None:
    hydra_cfg = HydraConfig.get()
    names = names_from_hydra(cfg)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    budget = cfg.get("budget")
    if budget is None:
        budget = f"{cfg.get('budget_per_class')}/class"
    label = (f"{names.dataset}/{names.features}/{names.selector}/{names.classifier} "
             f"budget={budget} seed={cfg.seed}")

    from nfpf.cli.callbacks import report_progress

    if is_complete(output_dir, run_hash(cfg)):
        log.info("skip (already complete): %s", label)
        report_progress(output_dir, "complete")
        return None
    try:
        threads = job_threads(cfg.get("threads"), hydra_cfg)
        log.info("run: %s (%d thread%s)", label, threads, "" if threads == 1 else "s")
        with thread_limit(threads):
            record = run(cfg, names, output_dir)
    except Exception as error:
        status = _record_failure(cfg, names, error, output_dir, multirun)
        if status == "skipped":
            log.warning("skipped %s: %s", label, error)
        else:
            log.error("FAILED %s: %s: %s (traceback in %s)", label, type(error).__name__, error,
                      output_dir / FAILED_FILE)
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


def _record_failure(cfg: DictConfig, names: RunNames, error: Exception, output_dir: Path,
                    multirun: bool) -> str:
    """Write the run's failure record; returns its status ("skipped" or "failed").

    Outside a sweep nothing follows the run: a user error ends ``nfpf-run`` with its one
    line and :data:`EXIT_USAGE`, anything else (or ``--debug``) is raised again.
    """
    # Sweeps over budgets per class cross datasets whose pools are too small for some:
    # with skip_infeasible_budget those runs are "skipped", not "failed".
    skipped = isinstance(error, InfeasibleBudgetError) and cfg.get("skip_infeasible_budget")
    status = "skipped" if skipped else "failed"
    write_json_atomic(output_dir / FAILED_FILE, failure_record(cfg, names, error, status=status))
    if multirun:
        return status
    message = user_error(error)
    if message is None:
        raise error
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # --debug: the traceback, same exit status
        traceback.print_exception(error, file=sys.stderr)
    print(f"nfpf-run: error: {message}\n(traceback in {output_dir / FAILED_FILE}; "
          f"--debug prints it)", file=sys.stderr)
    sys.exit(EXIT_USAGE)


@hydra.main(version_base="1.3", config_path=CONFIG_SEARCH_PATH, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def _pop_flag(argv: list[str], *names: str) -> bool:
    found = any(arg in names for arg in argv[1:])
    argv[1:] = [arg for arg in argv[1:] if arg not in names]
    return found


def main() -> None:
    """``nfpf-run``: Hydra's command line, plus ``-v``/``--verbose`` (show the launchers' job
    lists) and ``--debug`` (tracebacks for every error), and the exit status of the module
    docstring."""
    SESSION.verbose = _pop_flag(sys.argv, "-v", "--verbose")
    if _pop_flag(sys.argv, "--debug"):
        os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    register_slurm_schema()
    register_sweeper()
    # joblib's resource tracker (a child process) warns about the semaphores of the workers
    # Ctrl-C stopped while it cleans them up: nothing for the user to do
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [
        os.environ.get("PYTHONWARNINGS"),
        "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"]))

    def interrupted() -> str:
        done = sweep_counts(SESSION.sweep_dir)[0] if SESSION.sweep_dir else 0
        return (f"nfpf-run: interrupted; {done} run{'' if done == 1 else 's'} complete, "
                f"rerun the same command to resume")

    call_hydra_main(hydra_main, interrupted)
    if SESSION.failed:
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    # Through the module's import name, not __main__: joblib workers then import it by
    # reference (running its set-up, e.g. the warning filter) instead of copying functions.
    from nfpf.cli.run import main as imported_main

    imported_main()
