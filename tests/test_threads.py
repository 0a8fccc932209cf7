"""Threads per job: parallel sweep jobs split the cores instead of each taking all of them."""

from __future__ import annotations

import pytest
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf

from nfpf.cli.run import job_threads
from nfpf.core.resources import cpu_count, thread_limit


def hydra_cfg(mode, launcher=None):
    cfg = {"mode": mode}
    if launcher is not None:
        cfg["launcher"] = launcher
    return OmegaConf.create(cfg)


def test_explicit_threads_win():
    assert job_threads(3, hydra_cfg(RunMode.MULTIRUN, {"n_jobs": 2})) == 3


def test_single_run_takes_every_core():
    assert job_threads(None, hydra_cfg(RunMode.RUN)) == cpu_count()


@pytest.mark.parametrize(("n_jobs", "expected"), [
    (2, lambda cores: max(1, cores // 2)),
    (-1, lambda cores: 1),  # joblib: one job per core
    (10_000, lambda cores: 1),  # never below one thread
    (None, lambda cores: cores),  # a launcher without parallel jobs (basic, submitit)
])
def test_parallel_jobs_split_the_cores(n_jobs, expected):
    launcher = {"n_jobs": n_jobs} if n_jobs is not None else {"timeout_min": 60}
    assert job_threads(None, hydra_cfg(RunMode.MULTIRUN, launcher)) == expected(cpu_count())


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_threads(bad):
    with pytest.raises(ValueError, match="threads"):
        job_threads(bad, hydra_cfg(RunMode.RUN))


def test_thread_limit_sets_and_restores_torch():
    before = torch.get_num_threads()
    with thread_limit(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("allocated", "expected"), [
    ("1", lambda cores: 1),
    ("100000", lambda cores: cores),  # never more than the affinity mask
    ("", lambda cores: cores),  # not set: the mask alone
    ("0", lambda cores: cores),  # not a count
])
def test_slurm_cpus_per_task_caps_the_cores(monkeypatch, allocated, expected):
    import os

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", allocated)
    assert cpu_count() == expected(cores)
    assert job_threads(None, hydra_cfg(RunMode.MULTIRUN, {"timeout_min": 60})) == expected(cores)
