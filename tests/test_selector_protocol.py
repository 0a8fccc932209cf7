"""One protocol for every kind of selector (nfpf.core.protocol), the registry that reads the
kinds, and the selection cache keys that a resumed sweep relies on.

The pipeline names no selector class: a kind registered here, which nfpf's code has never
seen, runs through :func:`nfpf.evaluation.pipeline.run`, is cached and reported like the
shipped ones; the keys of the shipped kinds are those of the formula of before the protocol,
written out below as a reference.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
from typing import Any, ClassVar

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from sklearn.base import BaseEstimator

import nfpf
import nfpf.core.api
import nfpf.evaluation.pipeline as pipeline
from nfpf.active import ActiveStrategy, make_strategy
from nfpf.core.api import (
    CONFIG_DIR,
    available_selectors,
    load_selector_config,
    selector_names,
    selector_registry,
)
from nfpf.core.protocol import (
    SelectionPlan,
    SelectionRequest,
    SelectionResult,
    SelectorKind,
    kind_of,
    register_kind,
    run_selection,
    selector_kinds,
)
from nfpf.core.selection import RankingSelector, Selector, check_budget
from nfpf.evaluation.pipeline import RunNames, RunSpec, run, selection_key
from nfpf.io import config_hash
from nfpf.report.collect import collect_runs, mark_label_using

pytestmark = pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")

DIGITS_POOL = 1257  # the digits pool of conf/dataset/digits.yaml


def compose_run(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=["experiment=single", "logger=none", *overrides])


def on_the_cpu(selector: str) -> list[str]:
    """``selector.device=cpu`` for a selector with a device option: a GPU selection's key
    holds its device (tests/test_nfpf_device.py), these compare CPU keys."""
    return ["selector.device=cpu"] if "device" in load_selector_config(selector) else []


# ----------------------------------------------------------------------------- the pipeline

def test_the_pipeline_names_no_selector_class():
    """It neither imports a selector base class nor asks what class a selector is."""
    tree = ast.parse(inspect.getsource(pipeline))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"Selector", "RankingSelector", "SubsetSelector", "ActiveStrategy",
                "FullPool"} & imported
    assert not [m for m in modules if m and m.startswith("nfpf.active")]
    checked = []  # the classes of every isinstance / issubclass
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "isinstance", "issubclass"):
            second = node.args[1]
            names = second.elts if isinstance(second, ast.Tuple) else [second]
            checked += [ast.unparse(name) for name in names]
    for name in checked:  # only plain values, never a class that has a kind
        value = getattr(pipeline, name, getattr(builtins, name, None))
        assert value is not None and not hasattr(value, "kind"), name


class EveryOther(BaseEstimator):
    """A kind nfpf does not know: it queries the labels of every ``stride``-th sample."""

    kind: ClassVar[str] = "test_every_other"
    seen: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, stride: int = 2):
        self.stride = stride

    def plan_selection(self, n, budget, seed=0, model=None):
        budget = check_budget(budget, n // self.stride)
        return SelectionPlan(kind_of(self), labels=budget, picks=budget, budget_key=budget)

    def run_selection(self, request):
        type(self).seen.append({"labels": request.labels, "model": request.model})
        picks = np.arange(request.budget, dtype=np.int64) * self.stride
        labels = np.asarray(request.labels)[picks]  # it reads what it queried, nothing more
        return SelectionResult(picks, queries=len(picks), info={"classes": len(set(labels))})


class FirstRows(BaseEstimator):
    """Another unknown kind, label-free: the first rows of the pool."""

    kind: ClassVar[str] = "test_first_rows"
    seen: ClassVar[list[dict[str, Any]]] = []

    def plan_selection(self, n, budget, seed=0, model=None):
        return SelectionPlan(kind_of(self), labels=0, picks=check_budget(budget, n),
                             budget_key=budget)

    def run_selection(self, request):
        type(self).seen.append({"labels": request.labels, "model": request.model})
        return SelectionResult(np.arange(request.budget, dtype=np.int64))


register_kind(SelectorKind("test_every_other", label_using=True, returns="queries",
                           summary="a test kind: every other sample's label"))
register_kind(SelectorKind("test_first_rows", label_using=False, returns="picks",
                           summary="a test kind: the first rows"))


@pytest.mark.parametrize("cls,label_using", [(EveryOther, True), (FirstRows, False)])
def test_a_new_kind_runs_through_the_pipeline_unchanged(tmp_path, cls, label_using):
    cls.seen.clear()
    cfg = compose_run("budget=12", f"paths.output_dir={tmp_path}")
    with open_dict(cfg):
        cfg.selector = OmegaConf.create({"_target_": f"{__name__}.{cls.__name__}"})
    names = RunNames("test", "digits", "raw", cls.kind, "linear_svc")
    first = run(cfg, names, tmp_path / "a")
    again = run(cfg, names, tmp_path / "b")
    expected = np.arange(12) * (2 if label_using else 1)
    for sub in ("a", "b"):
        np.testing.assert_array_equal(np.load(tmp_path / sub / "indices.npy"), expected)
    assert first["selection"]["kind"] == cls.kind
    assert first["selection"]["label_using"] is label_using
    assert first["selection"].get("labels_queried") == (12 if label_using else None)
    assert not first["selection"]["cached"] and again["selection"]["cached"]
    # labels reach the new kind only when its plan queries them; it sees the run's model
    ((seen,),) = [cls.seen]
    assert (seen["labels"] is not None) is label_using
    assert seen["model"].__class__.__name__ == "SVC"
    # its selection is cached under the key of the one formula
    spec = RunSpec.from_config(cfg, names)
    plan = cls().plan_selection(DIGITS_POOL, 12)
    assert (tmp_path / "cache" / "selections" / f"{selection_key(spec, plan)}.npy").is_file()
    # and the report reads its kind from the registry
    runs = collect_runs(tmp_path / "a").complete
    assert runs["kind"].tolist() == [cls.kind]
    _, marked = mark_label_using(runs)
    assert marked == ([f"{cls.kind} ‡"] if label_using else [])


def test_run_selection_checks_what_a_selection_returns_against_its_plan():
    pool = nfpf.Pool(np.zeros((20, 2)))

    class Liar(FirstRows):
        def run_selection(self, request):
            return SelectionResult(np.arange(request.budget + 1, dtype=np.int64))

    with pytest.raises(RuntimeError, match=r"returned 6 indices .* its plan said 5"):
        run_selection(Liar(), SelectionRequest(pool, 5, 0))
    with pytest.raises(ValueError, match="queries labels: give the labels"):
        run_selection(EveryOther(), SelectionRequest(pool, 5, 0))

    class Nameless(BaseEstimator):
        pass

    with pytest.raises(TypeError, match="has no kind"):
        run_selection(Nameless(), SelectionRequest(pool, 5, 0))
    with pytest.raises(ValueError, match="registered already"):
        register_kind(SelectorKind("ranking", label_using=True, returns="picks", summary=""))


# ----------------------------------------------------------------------------- the registry

def test_the_folder_of_every_selector_config_says_its_kind():
    """conf/selector/*.yaml: label-free methods (picks or a ranking); ablation/: label-free
    variants of one of them; al/: the label-using strategies and the full-pool bound."""
    registry = selector_registry()
    assert set(registry) == set(selector_names())
    for name, entry in registry.items():
        assert entry.kind.label_using is name.startswith("al/"), name
        assert (entry.extends is not None) is name.startswith("ablation/"), name
        if entry.extends is not None:
            assert entry.extends in available_selectors()
            assert registry[entry.extends].kind == entry.kind, name
    assert set(available_selectors()) == {n for n in registry if "/" not in n}
    kinds = {name: entry.kind.name for name, entry in registry.items()}
    assert {kinds["dual"], kinds["alms"]} == {"ranking"}
    assert {kinds["kmeans"], kinds["nfpf"], kinds["ablation/nfpf_k5"]} == {"label_free"}
    assert {kinds["al/margin"], kinds["al/full"]} == {"label_using", "full_pool"}


@pytest.mark.slow
def test_every_entry_has_the_class_and_kind_of_what_its_composed_config_builds():
    for name, entry in selector_registry().items():
        config = load_selector_config(name)  # Hydra's composition
        assert entry.target == config["_target_"], name
        assert kind_of(instantiate(config)) == entry.kind, name


def test_every_kind_of_a_shipped_class_is_registered():
    classes = [Selector, RankingSelector, ActiveStrategy, nfpf.active.FullPool]
    assert [kind_of(c).name for c in classes] == ["label_free", "ranking", "label_using",
                                                  "full_pool"]
    assert {k.name: k.label_using for k in selector_kinds().values()
            if not k.name.startswith("test_")} == {
        "label_free": False, "ranking": False, "label_using": True, "full_pool": True}


def test_nfpf_select_refuses_every_label_using_entry_before_building_it(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a label-using selector was built")

    monkeypatch.setattr(nfpf.core.api, "make_selector", never)
    X = np.random.default_rng(0).normal(size=(30, 3))
    for name in [n for n, e in selector_registry().items() if e.kind.label_using]:
        with pytest.raises(ValueError, match=rf"^'{name}' is a supervised active-learning"):
            nfpf.select(X, 5, method=name)


def test_make_strategy_refuses_a_label_free_selector_and_lists_the_strategies():
    with pytest.raises(ValueError, match=r"Unknown active-learning strategy 'kmeans'\. "
                                         r"Known: al/badge, .*al/typiclust"):
        make_strategy("kmeans")
    assert isinstance(make_strategy("margin"), ActiveStrategy)


def test_the_classic_experiments_sweep_one_shared_selector_list():
    lists = {}
    for experiment in ("classic_ual", "classic_ual_quick"):
        raw = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml")
        assert OmegaConf.is_missing(raw.hydra.sweeper.params, "selector"), experiment
        assert "/selector_list@hydra.sweeper.params" in str(raw.defaults)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}"],
                          return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        assert list(params) == ["classifier", "dataset", "selector", "budget_per_class",
                                "seed"]  # the order of the sweep is kept
        lists[experiment] = [name.strip() for name in str(params.selector).split(",")]
    shared = OmegaConf.load(CONFIG_DIR / "selector_list" / "all.yaml").selector
    assert lists["classic_ual"] == lists["classic_ual_quick"] == [
        name.strip() for name in shared.split(",")]
    # every label-free method, then every label-using entry, each once
    registry = selector_registry()
    free = [n for n in lists["classic_ual"] if not registry[n].kind.label_using]
    using = [n for n in lists["classic_ual"] if registry[n].kind.label_using]
    assert lists["classic_ual"] == free + using
    assert sorted(free) == available_selectors()
    assert sorted(using) == sorted(n for n, e in registry.items() if e.kind.label_using)


# ----------------------------------------------------------------------------- cache keys

def key_before_the_protocol(cfg, selector_name: str, n: int, budget: int,
                            classifier: Any) -> str:
    """The selection key as the pipeline computed it before the protocol (a reference)."""
    selector = instantiate(cfg.selector)
    active = isinstance(selector, ActiveStrategy)
    ranked = isinstance(selector, RankingSelector)
    round_model = active and selector.model is None and selector.model_use is not None and (
        selector.model_use == "scores" or bool(getattr(classifier, "uses_images", False)))
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return config_hash({
        "dataset": plain(cfg.dataset), "features": plain(cfg.features),
        "selector": selector_name, "selector_config": plain(cfg.selector),
        "budget": {"ranking": selector.ranking_key(n, budget)} if ranked else budget,
        "seed": int(cfg.seed),
        **({"round_model": plain(cfg.classifier)} if round_model else {}),
    })


KEY_CASES = [
    ("kmeans", []),
    ("nfpf", ["seed=3"]),
    ("ablation/nfpf_k5", []),
    ("dual", ["budget=40"]),
    ("alms", ["selector.max_candidates=100"]),
    ("ted", ["selector.max_candidates=50"]),
    ("al/margin", []),
    ("al/margin", ["selector.model=logreg"]),
    ("al/coreset", ["classifier=logreg"]),
    ("al/coreset", ["classifier=resnet18_quick"]),
    ("al/typiclust", []),
    ("al/full", []),
]


@pytest.mark.parametrize("selector,overrides", KEY_CASES,
                         ids=[" ".join([s, *o]) for s, o in KEY_CASES])
def test_selection_keys_are_those_of_before_the_protocol(tmp_path, selector, overrides):
    cfg = compose_run(f"selector={selector}", "budget=20", *overrides, *on_the_cpu(selector),
                      f"paths.output_dir={tmp_path}")
    names = RunNames("test", "digits", "raw", selector, "x")
    classifier = instantiate(cfg.classifier)
    budget = int(cfg.budget)
    spec = RunSpec.from_config(cfg, names)
    plan = instantiate(cfg.selector).plan_selection(DIGITS_POOL, budget, spec.seed, classifier)
    assert selection_key(spec, plan) == key_before_the_protocol(cfg, selector, DIGITS_POOL,
                                                                budget, classifier)


@pytest.mark.parametrize("selector,overrides", [
    ("kmeans", []), ("al/margin", []),
    pytest.param("dual", ["selector.pretrain_epochs=2", "selector.epochs=2"],
                 marks=pytest.mark.slow)])
def test_a_run_caches_its_selection_under_the_key_of_before(tmp_path, selector, overrides):
    cfg = compose_run(f"selector={selector}", "budget=20", *overrides, *on_the_cpu(selector),
                      f"paths.output_dir={tmp_path}")
    run(cfg, RunNames("test", "digits", "raw", selector, "linear_svc"), tmp_path / "r")
    expected = key_before_the_protocol(cfg, selector, DIGITS_POOL, 20,
                                       instantiate(cfg.classifier))
    assert [p.stem for p in (tmp_path / "cache" / "selections").glob("*.npy")] == [expected]


# ----------------------------------------------------------------------------- run spec

def test_a_run_checks_the_seed_and_the_budget_once(tmp_path, monkeypatch):
    calls = {"seed": 0, "budget": 0}

    def counting(name, check):
        def counted(*args, **kwargs):
            calls[name] += 1
            return check(*args, **kwargs)
        return counted

    monkeypatch.setattr(pipeline, "check_seed", counting("seed", pipeline.check_seed))
    monkeypatch.setattr(pipeline, "check_budget", counting("budget", pipeline.check_budget))
    cfg = compose_run("selector=random", "seed=3.0", "budget_per_class=2",
                      f"paths.output_dir={tmp_path}")
    record = run(cfg, RunNames("test", "digits", "raw", "random", "linear_svc"), tmp_path / "r")
    assert calls == {"seed": 1, "budget": 1}
    assert record["seed"] == 3 and type(record["seed"]) is int
    assert record["budget"] == 20 and record["budget_per_class"] == 2


def test_the_run_spec_holds_typed_values_and_refuses_bad_ones_before_any_work(tmp_path):
    names = RunNames("test", "digits", "raw", "random", "linear_svc")
    spec = RunSpec.from_config(compose_run("budget=7.0", "seed='4'",
                                           f"paths.output_dir={tmp_path}"), names)
    assert (spec.seed, spec.budget, spec.budget_per_class) == (4, 7, None)
    assert spec.budget_for(10) == 7 and spec.cache_dir == tmp_path / "cache"
    per_class = RunSpec.from_config(compose_run("budget_per_class=3",
                                                f"paths.output_dir={tmp_path}"), names)
    assert per_class.budget_for(10) == 30
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 5
    for overrides, message in [(["seed=-1"], "^seed must be"),
                               (["budget=2.5"], "^budget must be a whole number"),
                               (["budget_per_class=0"], "^budget_per_class must be at least")]:
        with pytest.raises(ValueError, match=message):
            RunSpec.from_config(compose_run(*overrides, f"paths.output_dir={tmp_path}"), names)
