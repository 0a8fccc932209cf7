"""SLURM sweeps (``hydra/launcher=submitit_slurm``) against a real cluster.

The cluster tests need a SLURM controller that answers ``sinfo`` (``scripts/local-slurm
start --max-array-size 4 --accounting`` starts one on this machine, as ``.ci/run`` does) and
skip with the reason otherwise. The first tests need no cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from nfpf.cli.slurm import batches, task_config, with_plain_overrides
from nfpf.cli.sweep_validation import config_groups
from nfpf.core.api import CONFIG_DIR
from nfpf.evaluation.pipeline import run_hash

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["dataset=digits", "budget_per_class=2", "logger=none",
         "hydra/launcher=submitit_slurm", "hydra.launcher.poll_s=1",
         "hydra.launcher.lost_after_s=3"]


# ------------------------------------------------------------------ no cluster needed
def test_plain_overrides_give_hydras_composition():
    """A job's config from a representative of its combination plus its own values hashes
    as Hydra's full composition of the job (what the pre-submission skip relies on)."""
    with warnings.catch_warnings(), initialize_config_dir(config_dir=str(CONFIG_DIR),
                                                          version_base="1.3"):
        warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema")
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["dataset=digits"], RunMode.MULTIRUN)
        groups = config_groups(loader)

        def compose(overrides):
            return loader.load_sweep_config(master, list(overrides))

        base = compose(["selector=kmeans", "seed=0", "budget_per_class=2",
                        "selector.n_init=3"])
        for job in (["selector=kmeans", "seed=7", "budget_per_class=5", "selector.n_init=1"],
                    ["selector=kmeans", "seed=0", "budget_per_class=2", "selector.n_init=3"]):
            fast = with_plain_overrides(base, job, groups)
            assert run_hash(task_config(fast)) == run_hash(task_config(compose(job)))
        other = with_plain_overrides(base, ["selector=kmeans", "seed=1", "budget_per_class=2",
                                            "selector.n_init=3"], groups)
        assert run_hash(task_config(other)) != run_hash(task_config(base))
        # more than a plain assignment: composed in full instead
        assert with_plain_overrides(base, ["+extra=1"], groups) is None


def test_batches_cut_in_order():
    assert [list(b) for b in batches(list(range(9)), 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    with pytest.raises(ValueError, match="max_array_size"):
        batches([1], 0)


# ------------------------------------------------------------------ a real cluster
def _slurm(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                          check=True).stdout


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    """The cluster's configuration; skips when no SLURM controller answers."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM is not installed (scripts/local-slurm start installs and starts it)")
    try:
        states = _slurm("sinfo", "--noheader", "--format=%T").split()
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"no SLURM controller answers sinfo ({error}); "
                    f"start one with scripts/local-slurm start")
    if not set(states) & {"idle", "mixed", "allocated"}:
        pytest.skip(f"no SLURM node up (sinfo: {states})")
    config = {}
    for line in _slurm("scontrol", "show", "config").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def _accounting(cluster: dict[str, str]) -> bool:
    return cluster.get("AccountingStorageType") != "accounting_storage/none"


def nfpf_sweep(out: Path, *args: str, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", **extra_env}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "nfpf.cli.run", "-m", *SWEEP, *args,
                             f"paths.output_dir={out}"], cwd=out.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    stdout, stderr = proc.communicate(timeout=420)
    return proc.returncode, stdout + stderr


def job_ids(out: Path) -> set[str]:
    """SLURM array ids of the sweep's jobs, from submitit's folders (``.submitit/<id>``)."""
    return {p.name for p in out.rglob(".submitit/*") if p.is_dir() and p.name.isdigit()}


def sacct_states(ids: set[str]) -> dict[str, str]:
    out = _slurm("sacct", "--noheader", "--parsable2", "--allocations",
                 "--format=JobID,State", "--jobs", ",".join(sorted(ids)))
    return dict(line.split("|")[:2] for line in out.splitlines() if line)


@pytest.mark.slow
def test_sweep_runs_as_array_tasks_and_rerun_submits_nothing(cluster, tmp_path):
    out = tmp_path / "out"
    code, log = finish(nfpf_sweep(out, "selector=random,kmeans", "seed=0"))
    assert code == 0, log[-3000:]
    results = sorted(out.rglob("result.json"))
    assert sorted(json.loads(p.read_text())["selector"] for p in results) == ["kmeans",
                                                                               "random"]
    assert (out / "multirun" / "quickstart" / "report" / "index.html").is_file()
    ids = job_ids(out)
    assert len(ids) == 1, ids  # one array of two tasks
    if _accounting(cluster):
        states = sacct_states(ids)
        assert sorted(states) == [f"{next(iter(ids))}_{i}" for i in (0, 1)], states
        assert set(states.values()) == {"COMPLETED"}, states
    job_logs = [p.read_text() for p in out.rglob(".submitit/*/*_log.*")]
    assert len(job_logs) == 4  # stdout and stderr of each task
    assert not any("ConfigStore schema" in text for text in [log, *job_logs])
    # one thread per job: the job's SLURM_CPUS_PER_TASK, not the node's cores
    assert sum(text.count("(1 thread)") for text in job_logs) == 2, job_logs

    code, log = finish(nfpf_sweep(out, "selector=random,kmeans", "seed=0"))
    assert code == 0, log[-3000:]
    assert job_ids(out) == ids, "a rerun of complete runs submitted jobs"
    assert "2 already complete" in log


def without_accounting(tmp_path: Path) -> dict[str, str]:
    """An environment whose SLURM commands see the cluster without accounting: ``sacct``
    then fails as on a cluster without slurmdbd."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    lines = [line for line in conf.read_text().splitlines()
             if not line.startswith("AccountingStorage")]
    copy = tmp_path / "slurm-no-accounting.conf"
    copy.write_text("\n".join([*lines, "AccountingStorageType=accounting_storage/none", ""]))
    return {"SLURM_CONF": str(copy)}


@pytest.mark.slow
@pytest.mark.parametrize("sacct", [True, False], ids=["sacct", "no-sacct"])
def test_failed_and_cancelled_runs_are_reported(cluster, tmp_path, sacct):
    if sacct and not _accounting(cluster):
        pytest.skip("the cluster has no accounting (scripts/local-slurm start --accounting)")
    env = {} if sacct else without_accounting(tmp_path)
    if not sacct:
        no_sacct = subprocess.run(["sacct"], capture_output=True, text=True,
                                  env={**os.environ, **env}, timeout=30)
        assert no_sacct.returncode != 0, no_sacct.stdout
    out = tmp_path / "out"
    # the first task (seed=1) is cancelled while it runs; seed=-1 fails inside its job
    proc = nfpf_sweep(out, "selector=random", "seed=1,-1,0", "hydra.launcher.setup=[sleep 5]",
                      **env)
    deadline = time.monotonic() + 120
    while not job_ids(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    (array,) = job_ids(out)
    while time.monotonic() < deadline and _slurm(
            "squeue", "--noheader", "--format=%T", "--jobs", f"{array}_0").strip() != "RUNNING":
        time.sleep(0.2)
    subprocess.run(["scancel", f"{array}_0"], check=True, timeout=30)
    code, log = finish(proc)
    assert code == 1, log[-3000:]
    assert len(list(out.rglob("result.json"))) == 1
    failed = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())["error"]
              for p in out.rglob("failed.json")}
    assert sorted(failed) == [-1, 1], failed
    assert failed[-1].startswith("ValueError: seed must be")
    assert f"SLURM job {array}_0 ended without a result (CANCELLED" in failed[1]
    report = (out / "multirun" / "quickstart" / "report" / "index.html").read_text()
    assert "JobLostError" in report and "seed must be" in report
    assert "Runs: 1 complete, 2 failed" in log


@pytest.mark.slow
def test_sweep_larger_than_max_array_size_goes_in_several_arrays(cluster, tmp_path):
    limit = int(cluster.get("MaxArraySize", "1001"))
    if limit > 8:
        pytest.skip(f"MaxArraySize is {limit}: the test sweeps one run more than it; start "
                    f"the test cluster with scripts/local-slurm start --max-array-size 4")
    out = tmp_path / "out"
    seeds = ",".join(str(s) for s in range(limit + 1))
    code, log = finish(nfpf_sweep(out, "selector=random", "budget_per_class=1",
                                  f"seed={seeds}"))
    assert code == 0, log[-3000:]
    assert len(list(out.rglob("result.json"))) == limit + 1
    assert len(job_ids(out)) == 2, job_ids(out)  # limit tasks, then one
    assert re.search(rf"as 2 arrays of at most {limit} tasks", log), log[-2000:]
