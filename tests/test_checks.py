"""Input checks shared by the library and the command lines: the one seed rule of every
selector, unknown selector options, error messages that point the right way; and files whose
mode follows the umask."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

import nfpf
from nfpf.app.select_images import SelectError, select_images
from nfpf.core.api import CONFIG_DIR, available_selectors, load_selector_config, make_selector
from nfpf.core.selection import MAX_SEED, Pool, Selector, check_seed
from nfpf.data import load_dataset
from nfpf.evaluation.pipeline import RunNames, resolve_budget, run
from nfpf.io import write_json_atomic, write_npy_atomic

BAD_SEEDS = [-1, 1.5, MAX_SEED + 1, 2**40, None, "a", True, float("nan")]


@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_check_seed_rejects_what_some_generator_would_refuse(seed):
    with pytest.raises(ValueError, match=r"^seed must be a whole number from 0 to 4294967295"):
        check_seed(seed)


def test_check_seed_accepts_the_whole_range():
    assert [check_seed(s) for s in (0, 7, 3.0, "5.0", np.int64(5), MAX_SEED)] == \
        [0, 7, 3, 5, 5, MAX_SEED]
    assert type(check_seed(np.int64(5))) is int


def test_every_selector_applies_the_seed_rule_before_any_work(monkeypatch):
    X = np.random.default_rng(0).normal(size=(40, 3))
    for name in available_selectors():
        # the class with its defaults: the rule lives in the base class, whatever the options
        selector = get_class(load_selector_config(name)["_target_"])()
        calls = []
        # the pool is never looked at: a bad seed fails before the method's own code runs
        monkeypatch.setattr(type(selector), "_select", lambda *a, calls=calls: calls.append(a))
        if hasattr(type(selector), "_rank"):
            monkeypatch.setattr(type(selector), "_rank", lambda *a, calls=calls: calls.append(a))
        for seed in (-1, 1.5, None, 2**40):
            with pytest.raises(ValueError, match=r"^seed must be"):
                selector.select(Pool(X, n_classes=2), 2, seed=seed)
        assert calls == [], name


@pytest.mark.parametrize("method", ["kmeans", "typiclust", "random", "coreset"])
def test_the_largest_seed_works_in_every_generator(method):
    # 2**40 used to fail only in kmeans and typiclust (scikit-learn's random_state limit)
    X = np.random.default_rng(0).normal(size=(60, 3))
    picks = nfpf.select(X, 4, method=method, seed=MAX_SEED)
    assert len(np.unique(picks)) == 4


@pytest.mark.parametrize("seed", [None, -1, 1.5])
def test_nfpf_select_and_nfpf_select_cli_name_the_seed(seed, tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ValueError, match=r"^seed must be"):
        nfpf.select(X, 3, method="kmeans", seed=seed)
    np.save(tmp_path / "f.npy", X)
    with pytest.raises(SelectError, match=r"^seed must be"):
        select_images(tmp_path / "f.npy", 3, tmp_path / "out", selector="random", seed=seed)
    assert not (tmp_path / "out").exists()


def test_unknown_selector_option_is_one_line_with_close_matches_first():
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError) as info:
        nfpf.select(X, 5, method="typiclust", distanse=2)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown option 'distanse' for selector 'typiclust'")
    valid = message.split("valid options: ")[1].rstrip(".").split(", ")
    assert valid[0] == "distance"  # the close match first, then every other option
    assert set(valid) == set(make_selector("typiclust").get_params())
    # a valid option still reaches the selector
    assert make_selector("typiclust", distance="euclidean").distance == "euclidean"


def test_budget_per_class_error_names_its_key():
    with pytest.raises(ValueError, match=r"^budget_per_class must be a whole number.*'abc'"):
        resolve_budget(None, "abc", 10)
    with pytest.raises(ValueError, match=r"^budget must be at least 1; got -5"):
        resolve_budget(-5, None, 10)


def test_probcover_without_classes_names_the_arguments_of_nfpf_select():
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError) as info:
        nfpf.select(X, 3, method="probcover")
    message = str(info.value)
    assert "n_classes=" in message and "delta=" in message and "nfpf.select" in message
    assert "build the Pool" not in message
    # and what it says works
    assert len(nfpf.select(X, 3, method="probcover", n_classes=3)) == 3
    assert len(nfpf.select(X, 3, method="probcover", delta=0.5)) == 3


def test_absolute_dataset_path_is_not_said_to_be_under_the_data_root(tmp_path):
    missing = tmp_path / "elsewhere" / "missing.mat"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mat", file=str(missing), root=str(tmp_path / "root"))
    message = str(info.value)
    assert str(missing) in message and "under the data root" not in message
    # a relative path is looked for under the data root, and says so
    with pytest.raises(FileNotFoundError, match="under the data root"):
        load_dataset("mat", file="missing.mat", root=str(tmp_path / "root"))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_result_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "r.json", {"a": 1})
        write_npy_atomic(tmp_path / "i.npy", np.arange(3))
    finally:
        os.umask(old)
    for name in ("r.json", "i.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.npy", "r.json"]  # no temp left


def test_a_run_writes_results_and_caches_that_follow_the_umask(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=single", "logger=none",
                                           "selector=random", "budget=10",
                                           f"paths.output_dir={tmp_path}"])
    old = os.umask(0o022)
    try:
        run(cfg, RunNames("test", "digits", "raw", "random", "linear_svc"), tmp_path / "run")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    names = {p.name for p in files}
    assert {"result.json", "indices.npy"} <= names
    assert {"features", "selections"} <= {p.parent.name for p in files}  # the caches
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes


def test_ted_picks_the_same_samples_for_every_seed_within_max_candidates():
    # what docs/baselines.md says about TED's "± 0.0": the seed draws candidates only above
    # max_candidates
    X = np.random.default_rng(0).normal(size=(80, 4))
    within = [nfpf.select(X, 6, method="ted", seed=s) for s in range(3)]
    assert all(np.array_equal(within[0], p) for p in within)
    above = [nfpf.select(X, 6, method="ted", seed=s, max_candidates=20) for s in range(3)]
    assert not all(np.array_equal(above[0], p) for p in above)


class _Counting(Selector):
    def _select(self, pool, budget, seed):
        return np.arange(budget)


def test_seed_is_checked_by_the_base_class_for_a_user_selector():
    with pytest.raises(ValueError, match=r"^seed must be"):
        _Counting().select(np.zeros((5, 2)), 2, seed=-3)
    assert _Counting().select(np.zeros((5, 2)), 2, seed=3.0).tolist() == [0, 1]


SELECTOR_FILES = sorted(str(p.relative_to(CONFIG_DIR / "selector").with_suffix(""))
                        for p in (CONFIG_DIR / "selector").rglob("*.yaml"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")
def test_load_selector_config_equals_the_selector_node_of_a_run_config():
    # the route of nfpf-run: the whole run config, with no trainer group so that the
    # selectors' ``${oc.select:trainer,null}`` resolves as it does outside a run
    assert {"nfpf", "ablation/nfpf_mse", "al/badge"} <= set(SELECTOR_FILES)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name in SELECTOR_FILES:
            run_config = compose("config", overrides=[f"selector={name}", "~trainer"])
            expected = OmegaConf.to_container(run_config.selector, resolve=True)
            assert OmegaConf.to_container(load_selector_config(name)) == expected, name


def test_an_ablation_selector_is_its_parent_file_with_its_own_keys_on_top():
    # a hand-made merge of the two YAML files, without Hydra
    parent = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "selector" / "nfpf.yaml"))
    assert parent["score"] == "pearson"
    assert OmegaConf.to_container(load_selector_config("ablation/nfpf_mse")) == \
        {**parent, "score": "mse"}


def test_selector_references_to_the_run_resolve_to_null_outside_a_run():
    assert load_selector_config("dual")["trainer"] is None
    assert load_selector_config("alms")["trainer"] is None


@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")
def test_make_selector_inside_a_running_hydra_app_leaves_its_hydra_alone():
    # nfpf-run's jobs build selectors (an AL strategy's initial set) while Hydra holds
    # the process-wide GlobalHydra
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        running = GlobalHydra.instance().hydra
        assert make_selector("kmeans").get_params()["n_init"] == \
            load_selector_config("kmeans")["n_init"]
        assert load_selector_config("dual")["trainer"] is None
        assert GlobalHydra.instance().hydra is running
        assert compose("config", overrides=["selector=dual"]).selector.trainer.accelerator \
            == "cpu"
    assert not GlobalHydra.instance().is_initialized()


def test_load_selector_config_names_the_known_selectors_for_an_unknown_one():
    with pytest.raises(ValueError, match=r"^Unknown selector 'nfpff'\. Known selectors: .*nfpf"):
        load_selector_config("nfpff")
