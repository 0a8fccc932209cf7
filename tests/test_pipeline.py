"""End to end: the Hydra entry point, resume, failures, determinism, W&B offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins

from nfpf.core.api import CONFIG_DIR
from nfpf.evaluation.pipeline import InfeasibleBudgetError, RunNames, run

PROJECT = Path(__file__).resolve().parents[1]


def nfpf_run(*overrides: str, out: Path, check: bool = True, **kwargs):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "nfpf.cli.run", *overrides, f"paths.output_dir={out}"],
        cwd=out.parent, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"nfpf-run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose_run(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=["experiment=single", "logger=none", *overrides])


NAMES = RunNames("test", "digits", "raw", "coreset", "linear_svc")


@pytest.mark.slow
def test_multirun_2x2_writes_4_results_and_a_report(tmp_path):
    out = tmp_path / "out"
    proc = nfpf_run("selector=random,coreset", "seed=0,1", "budget_per_class=2", out=out)
    results = sorted(out.rglob("result.json"))
    assert len(results) == 4
    records = [json.loads(p.read_text()) for p in results]
    assert {(r["selector"], r["seed"]) for r in records} == {
        ("random", 0), ("random", 1), ("coreset", 0), ("coreset", 1)}
    for path, record in zip(results, records, strict=True):
        indices = np.load(path.with_name("indices.npy"))
        assert len(indices) == record["budget"] == 20
        assert 0 <= record["metrics"]["accuracy"] <= 1
        assert record["timings"]["selection"] >= 0 and record["versions"]["torch"]
    report = out / "multirun" / "quickstart" / "report"
    assert (report / "report.md").is_file()
    text = (report / "report.md").read_text()
    assert "coreset" in text and "random" in text
    assert "sweep progress: 4/4" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_sweep_killed_and_rerun_finishes_without_duplicates(tmp_path):
    out = tmp_path / "out"
    sweep = out / "multirun" / "quickstart"
    args = [sys.executable, "-m", "nfpf.cli.run", "selector=random,coreset,kmeans",
            "seed=0,1", "budget_per_class=3", "classifier=lightning_linear",
            f"paths.output_dir={out}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    # killed as soon as it says that a first run finished (read as it writes: no clock)
    for line in proc.stdout:
        if "sweep progress: 1/6 runs finished" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p: p.stat().st_mtime_ns for p in sweep.rglob("result.json")}
    assert 1 <= len(first) < 6, "the sweep should be killed part-way"

    nfpf_run("selector=random,coreset,kmeans", "seed=0,1", "budget_per_class=3",
             "classifier=lightning_linear", out=out)
    results = sorted(sweep.rglob("result.json"))
    assert len(results) == 6
    assert len({p.parent for p in results}) == 6
    for path, mtime in first.items():  # finished runs were skipped, not redone
        assert path.stat().st_mtime_ns == mtime
    assert not [p for p in sweep.rglob("*") if p.name.endswith(".tmp")]
    assert not list(sweep.rglob("failed.json"))


@pytest.mark.slow
def test_failed_run_is_recorded_and_sweep_goes_on(tmp_path):
    out = tmp_path / "out"
    # budget 2000 > digits pool (1257): the coreset run fails, the other budget runs; the
    # sweep exits 1 after its report
    proc = nfpf_run("selector=coreset", "budget=20,2000", "budget_per_class=null", "seed=0",
                    out=out, check=False)
    assert proc.returncode == 1
    sweep = out / "multirun" / "quickstart"
    failed = list(sweep.rglob("failed.json"))
    assert len(failed) == 1 and len(list(sweep.rglob("result.json"))) == 1
    record = json.loads(failed[0].read_text())
    assert record["status"] == "failed" and "larger than the digits pool" in record["error"]
    assert not (failed[0].parent / "result.json").exists()
    assert "budget=2000" in (sweep / "report" / "report.md").read_text()


def test_single_run_bad_budget_exits_with_clear_error_and_no_result(tmp_path):
    out = tmp_path / "out"
    proc = nfpf_run("experiment=single", "budget_per_class=500", "selector=random",
                    out=out, check=False)
    assert proc.returncode != 0
    assert "larger than the digits pool" in proc.stderr
    assert not list(out.rglob("result.json"))


@pytest.mark.parametrize("group,value", [("selector", "nope"), ("dataset", "nope"),
                                         ("classifier", "nope")])
def test_unknown_choice_lists_known_ones(tmp_path, group, value):
    proc = nfpf_run("experiment=single", f"{group}={value}", out=tmp_path / "o", check=False)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr
    known = {"selector": "coreset", "dataset": "digits", "classifier": "linear_svc"}[group]
    assert known in proc.stderr


def test_sweep_with_an_unknown_choice_fails_before_any_run(tmp_path):
    # the bad choice is the last job of the sweep: validation must still reach it up front
    proc = nfpf_run("-m", "experiment=single", "selector=random,kmeans,nope", "seed=0,1",
                    out=tmp_path / "o", check=False)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "nope" in proc.stderr
    assert not list((tmp_path / "o").rglob("result.json"))


def test_sweep_validation_keeps_one_job_per_group_combination():
    from nfpf.cli.sweep_validation import representative_jobs

    groups = {"selector", "selector/ablation", "dataset", "hydra/launcher"}
    batch = [[f"dataset={d}", f"selector={s}", f"budget_per_class={b}", f"seed={r}"]
             for d in ("digits", "usps") for s in ("kmeans", "ablation/nfpf_mse")
             for b in (1, 2) for r in (0, 1)]
    kept = representative_jobs(batch, groups)
    assert kept == [batch[0], batch[4], batch[8], batch[12]]
    # a key overridden by only some jobs makes them a combination of their own
    extra = [["selector=kmeans", "seed=0"], ["selector=kmeans", "seed=1"],
             ["selector=kmeans", "seed=1", "selector.n_init=2"],
             ["+hydra/launcher=joblib", "seed=0"]]
    assert representative_jobs(extra, groups) == [extra[0], extra[2], extra[3]]


def test_the_sweeper_plugin_validates_one_job_per_group_combination():
    from types import SimpleNamespace

    from hydra_plugins.nfpf_sweepers.representative import representative_basic_sweeper

    composed = []

    class Loader:
        def list_groups(self, parent):
            return ["selector"] if parent == "" else []

        def load_sweep_config(self, master_config, sweep_overrides):
            composed.append(sweep_overrides)

    # what RepresentativeSweeper.sweep hands the batches to
    sweeper = representative_basic_sweeper()(max_batch_size=None)
    sweeper.hydra_context, sweeper.config = SimpleNamespace(config_loader=Loader()), {}
    batch = [[f"selector={s}", f"seed={r}"] for s in ("a", "b") for r in range(50)]
    sweeper.validate_batch_is_legal(batch)
    assert composed == [["selector=a", "seed=0"], ["selector=b", "seed=0"]]
    # Hydra's own sweeper, which the plugin leaves as it is, composes every job
    composed.clear()
    plain = Plugins.instance().class_name_to_class[
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"](max_batch_size=None)
    plain.hydra_context, plain.config = SimpleNamespace(config_loader=Loader()), {}
    plain.validate_batch_is_legal(batch)
    assert len(composed) == 100


def test_a_budget_drops_the_budget_per_class_sweep():
    from nfpf.cli.sweep_validation import exclusive_budgets

    params = {"selector": "kmeans,random", "budget_per_class": "1,2,5,10"}
    kept, arguments, note = exclusive_budgets(params, ["budget=10,20", "seed=0,1"])
    assert kept == {"selector": "kmeans,random"} and arguments == ["budget=10,20", "seed=0,1"]
    assert note == ("budget=10,20 is set, so budget_per_class=1,2,5,10 is dropped from the "
                    "sweep (a run with a budget ignores budget_per_class)")
    # no budget, or budget=null: the per-class sweep stays
    assert exclusive_budgets(params, ["seed=0"]) == (params, ["seed=0"], None)
    assert exclusive_budgets(params, ["budget=null"])[2] is None
    # both on the command line: the budget wins there too
    assert exclusive_budgets({}, ["budget=10", "budget_per_class=1,2"])[:2] == ({},
                                                                               ["budget=10"])


@pytest.mark.slow
def test_a_budget_sweep_runs_each_budget_once(tmp_path):
    """The issue's command: 2 selectors x 2 budgets x 2 seeds is 8 runs, not 32."""
    proc = nfpf_run("-m", "dataset=digits", "selector=kmeans,random", "budget=10,20",
                    "seed=0,1", "logger=none", out=tmp_path / "o", check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "o").rglob("result.json"))) == 8
    assert "budget_per_class=1,2,5,10 is dropped from the sweep" in proc.stdout + proc.stderr
    assert "duplicates" not in proc.stdout


def test_importing_the_cli_changes_nothing_in_hydra():
    """Importing ``nfpf.cli.run`` (in a fresh process) leaves Hydra's sweeper classes as they
    are; ``nfpf-run`` selects the plugin through its config instead."""
    code = ("import hydra.plugins.sweeper as s\n"
            "from hydra.core.plugins import Plugins\n"
            "basic = Plugins.instance().class_name_to_class["
            "'hydra._internal.core_plugins.basic_sweeper.BasicSweeper']\n"
            "before = (s.Sweeper.validate_batch_is_legal, basic.validate_batch_is_legal)\n"
            "import nfpf.cli.run\n"
            "assert (s.Sweeper.validate_batch_is_legal, basic.validate_batch_is_legal) == before\n"
            "assert 'validate_batch_is_legal' not in vars(basic)\n"
            "print('untouched')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "untouched", done.stderr[-2000:]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == (
        "hydra_plugins.nfpf_sweepers.representative.RepresentativeSweeper")


@pytest.mark.parametrize("overrides,error,match", [
    (["budget=0"], ValueError, "at least 1"),
    (["budget=-5"], ValueError, "at least 1"),
    (["budget=5000"], InfeasibleBudgetError, "larger than the digits pool"),
    (["budget_per_class=null"], ValueError, "No budget"),
])
def test_bad_budgets_raise_before_work(tmp_path, overrides, error, match):
    cfg = compose_run(f"paths.output_dir={tmp_path}", *overrides)
    with pytest.raises(error, match=match):
        run(cfg, NAMES, tmp_path / "run")
    assert not (tmp_path / "run" / "result.json").exists()


def test_count_budget_wins_over_per_class(tmp_path):
    record = run(compose_run(f"paths.output_dir={tmp_path}", "budget=13", "budget_per_class=2"),
                 NAMES, tmp_path / "r")
    assert record["budget"] == 13 and record["budget_per_class"] is None


def test_same_seed_same_indices_different_seed_differs(tmp_path):
    def indices(seed: int, sub: str) -> np.ndarray:
        cfg = compose_run("paths.cache_dir=null", f"seed={seed}", "selector=coreset",
                          f"paths.output_dir={tmp_path}")
        run(cfg, NAMES, tmp_path / sub)
        return np.load(tmp_path / sub / "indices.npy")

    a, b, c = indices(0, "a"), indices(0, "b"), indices(1, "c")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_selection_cache_is_reused_across_classifiers(tmp_path):
    first = run(compose_run(f"paths.output_dir={tmp_path}", "selector=kmeans"),
                NAMES, tmp_path / "svc")
    second = run(compose_run(f"paths.output_dir={tmp_path}", "selector=kmeans",
                             "classifier=knn1"), NAMES, tmp_path / "knn")
    assert not first["selection"]["cached"] and second["selection"]["cached"]
    assert np.array_equal(np.load(tmp_path / "svc" / "indices.npy"),
                          np.load(tmp_path / "knn" / "indices.npy"))


def test_ranking_selector_trains_once_per_seed_across_budgets(tmp_path):
    fast = ["selector=dual", "selector.pretrain_epochs=3", "selector.epochs=3",
            f"paths.output_dir={tmp_path}"]
    names = RunNames("test", "digits", "raw", "dual", "linear_svc")
    small = run(compose_run(*fast, "budget=10"), names, tmp_path / "b10")
    large = run(compose_run(*fast, "budget=40"), names, tmp_path / "b40")
    other_seed = run(compose_run(*fast, "budget=40", "seed=1"), names, tmp_path / "s1")
    assert not small["selection"]["cached"] and large["selection"]["cached"]
    assert not other_seed["selection"]["cached"]
    b10, b40 = np.load(tmp_path / "b10" / "indices.npy"), np.load(tmp_path / "b40" / "indices.npy")
    assert b10.shape == (10,) and b40.shape == (40,)
    np.testing.assert_array_equal(b10, b40[:10])
    # the cut ranking is what an uncached run at that budget selects
    direct = run(compose_run(*fast, "budget=10", "paths.cache_dir=null"), names,
                 tmp_path / "direct")
    assert not direct["selection"]["cached"]
    np.testing.assert_array_equal(np.load(tmp_path / "direct" / "indices.npy"), b10)


def test_labels_never_reach_the_selector(tmp_path, monkeypatch):
    from nfpf.core.selection import Pool, Selector

    seen = []
    original = Selector.select

    def spy(self, pool, budget, *, seed=0):
        seen.append(pool)
        return original(self, pool, budget, seed=seed)

    monkeypatch.setattr(Selector, "select", spy)
    run(compose_run(f"paths.output_dir={tmp_path}", "paths.cache_dir=null"), NAMES,
        tmp_path / "r")
    (pool,) = seen
    assert isinstance(pool, Pool)
    assert not any("label" in name for name in vars(pool))


@pytest.mark.slow
def test_wandb_offline_run_holds_the_accuracy(tmp_path):
    out = tmp_path / "out"
    nfpf_run("experiment=single", "selector=kmeans", "logger=wandb", out=out)
    record = json.loads(next(out.rglob("result.json")).read_text())
    run_files = list((out / "wandb").rglob("offline-run-*/*.wandb"))
    assert len(run_files) == 1
    blob = run_files[0].read_bytes()
    assert b"accuracy" in blob
    assert json.dumps(record["metrics"]["accuracy"]).encode() in blob


def test_wandb_settings_reach_the_run(tmp_path):
    # conf/logger/wandb.yaml turns the per-run package list off; asking for it brings it back
    from nfpf.evaluation.tracking import WandbLogger

    record = {"metrics": {"accuracy": 0.5, "balanced_accuracy": 0.5, "classes_covered": 1,
                          "class_histogram": [1], "per_class_accuracy": [0.5]}, "timings": {}}
    logger_cfg = compose_run("logger=wandb", f"paths.output_dir={tmp_path}").logger
    assert logger_cfg.settings.x_save_requirements is False
    files = {}
    for name, save in [("off", False), ("on", True)]:
        settings = {**logger_cfg.settings, "x_save_requirements": save}
        run_dir = WandbLogger(mode="offline", dir=str(tmp_path / name),
                              settings=settings).log_run(record, group="g", name=name)
        files[name] = {p.name for p in Path(run_dir).rglob("*") if p.is_file()}
    assert "requirements.txt" in files["on"]
    assert "requirements.txt" not in files["off"]


def test_progress_ledger_counts_the_last_status_of_each_run(tmp_path):
    from nfpf.cli.callbacks import append_status, ledger_counts

    ledger = tmp_path / "progress.jsonl"
    for run_dir, status in [("a", "failed"), ("b", "complete"), ("c", "skipped"),
                            ("a", "complete"), ("b", "complete"), ("d", "failed")]:
        append_status(ledger, run_dir, status)
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write('{"run": "e", "sta')  # a line cut by a crash
    assert ledger_counts(ledger) == (2, 1, 1)


def test_nfpf_budgets_share_the_seeding_and_reference_through_the_cache(tmp_path):
    # nfpf-run hands NFPF <cache_dir>/memory: the second budget reuses the K-means seeding
    # and the reference SFLM, and its picks equal a run without any cache
    common = ["selector=nfpf", "selector.ref_hidden=100", "selector.progress=false",
              f"paths.output_dir={tmp_path}"]
    names = RunNames("test", "digits", "raw", "nfpf", "linear_svc")
    infos = []
    for budget in (20, 40):
        record = run(compose_run(*common, f"budget={budget}"), names, tmp_path / str(budget))
        infos.append(record["selection"]["info"])
    assert infos[0]["memory_hits"] == []
    assert infos[1]["memory_hits"] == ["reference", "seeding_kmeans"]
    assert (tmp_path / "cache" / "memory").is_dir()
    fresh = run(compose_run(*common, "budget=40", "paths.cache_dir=null"), names,
                tmp_path / "nocache")
    assert fresh["selection"]["info"]["memory_hits"] == []
    assert fresh["metrics"] == record["metrics"]
    assert np.array_equal(np.load(tmp_path / "40" / "indices.npy"),
                          np.load(tmp_path / "nocache" / "indices.npy"))
