"""The selector registry (the configs of ``conf/selector/``, each with its kind) and the
library entry point for users who do not use Hydra: :func:`select`."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import inspect
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from nfpf.core.protocol import SelectionRequest, SelectorKind, kind_of, run_selection
from nfpf.core.selection import Pool, Selector, check_budget, check_seed

__all__ = [
    "CONFIG_DIR",
    "CONFIG_PACKAGE",
    "CONFIG_SEARCH_PATH",
    "SelectorEntry",
    "available_selectors",
    "build_selector",
    "check_selector_options",
    "load_selector_config",
    "make_selector",
    "select",
    "selector_entry",
    "selector_names",
    "selector_registry",
]

#: The package holding the Hydra configs (the checkout's ``conf/``, installed as package data).
CONFIG_PACKAGE = "nfpf.conf"
#: Hydra's name of that search path (``@hydra.main(config_path=CONFIG_SEARCH_PATH)``).
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
#: The config directory on disk: ``conf/`` of a checkout, ``nfpf/conf`` of an installed wheel.
CONFIG_DIR = Path(str(importlib.resources.files(CONFIG_PACKAGE)))


def available_selectors() -> list[str]:
    """The label-free methods: the YAML files directly in ``conf/selector/`` (the ablation
    variants of ``ablation/`` and the label-using strategies of ``al/`` excluded)."""
    return sorted(p.stem for p in (CONFIG_DIR / "selector").glob("*.yaml"))


def selector_names() -> list[str]:
    """Every selector config: ``conf/selector/**/<name>.yaml`` as ``selector=<name>`` writes
    it (``kmeans``, ``ablation/nfpf_k5``, ``al/margin``), sorted."""
    root = CONFIG_DIR / "selector"
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


@dataclass(frozen=True)
class SelectorEntry:
    """One selector config of the registry.

    The config tree marks the kind by folder: ``conf/selector/*.yaml`` are label-free
    methods, ``ablation/*.yaml`` label-free variants of one of them, ``al/*.yaml`` the
    label-using strategies and bound; the kind itself is the ``kind`` of the class the config
    builds (``tests/test_selector_protocol.py`` checks that the two agree).

    Attributes
    ----------
    name : str
        ``selector=<name>`` of ``nfpf-run``, ``method=<name>`` of :func:`select`.
    target : str
        The class the config builds (its ``_target_``).
    kind : SelectorKind
        What a selection of it needs and returns (:mod:`nfpf.core.protocol`).
    extends : str or None
        The selector config it is written on top of (an ablation's method), from its
        defaults list (``/selector/<extends>@_here_``).
    """

    name: str
    target: str
    kind: SelectorKind
    extends: str | None = None


@functools.cache
def selector_entry(name: str) -> SelectorEntry:
    """The registry's entry of ``conf/selector/<name>.yaml`` (a one-line error naming the
    known selectors for an unknown name).

    Read from the file itself, without composing it: its ``_target_``, else that of the
    selector its defaults list extends (the value Hydra's composition gives it).
    """
    raw = OmegaConf.load(_selector_file(name))
    bases = [str(d).removeprefix("/selector/").split("@")[0] for d in raw.get("defaults", [])
             if str(d).startswith("/selector/")]
    extends = bases[0] if bases else None
    target = raw.get("_target_") or (selector_entry(extends).target if extends else None)
    if target is None:
        raise ValueError(f"selector {name!r} has no _target_; it cannot build a selector.")
    return SelectorEntry(name=name, target=str(target), kind=kind_of(get_class(str(target))),
                         extends=extends)


def _selector_file(name: str) -> Path:
    """``conf/selector/<name>.yaml``; a one-line error naming the known selectors when
    there is none."""
    path = CONFIG_DIR / "selector" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"Unknown selector {name!r}. Known selectors: {', '.join(available_selectors())}."
        )
    return path


def selector_registry() -> dict[str, SelectorEntry]:
    """Every selector config's :class:`SelectorEntry`, by name."""
    return {name: selector_entry(name) for name in selector_names()}


def load_selector_config(method: str) -> DictConfig:
    """The config of ``conf/selector/<method>.yaml`` (e.g. "nfpf", "ablation/nfpf_mse").

    Hydra composes it, as ``nfpf-run selector=<method>`` does, so a file extending another
    selector through its defaults list (``defaults: [/selector/nfpf@_here_, _self_]``) gives
    the library and ``nfpf-run`` the same object.
    """
    _selector_file(method)  # an unknown name: the one-line error naming the known ones
    return OmegaConf.create(_composed_selector(method))


_COMPOSE_LOCK = threading.Lock()


@functools.cache
def _composed_selector(method: str) -> dict[str, Any]:
    """The resolved selector node Hydra composes for ``+selector=<method>`` alone.

    Outside ``nfpf-run`` no run config surrounds the selector: its references to the run's
    groups (``trainer: ${oc.select:trainer,null}``) resolve as if the group were absent.
    Hydra's composition goes through the process-wide ``GlobalHydra``, which a running
    ``nfpf-run`` job holds: it is set aside for the composition and put back after.
    """
    with _COMPOSE_LOCK:
        global_hydra = GlobalHydra.instance()
        running = global_hydra.hydra
        global_hydra.clear()
        try:
            with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
                config = compose(overrides=[f"+selector={method}"])
        finally:  # the composition initialised this same instance: empty it, then restore
            global_hydra.clear()
            GlobalHydra.set_instance(global_hydra)
            if running is not None:
                global_hydra.initialize(running)
    return OmegaConf.to_container(config.selector, resolve=True)


def check_selector_options(method: str, config: Mapping[str, Any]) -> None:
    """Raise a one-line ``ValueError`` when ``config`` (a selector config: ``_target_`` and
    options) has an option the selector's class does not take.

    The message names the option and the selector and lists the valid options, the close
    matches of the misspelt one first. Classes taking ``**kwargs`` accept any option.
    """
    if "_target_" not in config:
        raise ValueError(f"selector {method!r} has no _target_; it cannot build a selector.")
    parameters = inspect.signature(get_class(str(config["_target_"]))).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name in parameters if name != "self"]
    for key in config:
        if str(key).startswith("_") or key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        ordered = close + [name for name in valid if name not in close]
        raise ValueError(
            f"unknown option {key!r} for selector {method!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; valid options: {', '.join(ordered) or 'none'}.")


def build_selector(config: Mapping[str, Any], name: str, *, convert: str = "none") -> Any:
    """The selector a selector config (``_target_`` and options) builds, any kind.

    Its options are checked first (:func:`check_selector_options`); the constructor's
    one-line ``ValueError`` is raised as it is, not wrapped in Hydra's error. ``convert`` is
    Hydra's ``_convert_`` (``"all"``: plain lists and dicts as parameters).
    """
    check_selector_options(name, config)
    try:
        return instantiate(config, _convert_=convert)
    except InstantiationException as error:  # Hydra wraps the constructor's one-line error
        if isinstance(error.__cause__, ValueError):
            raise error.__cause__ from None
        raise


def make_selector(method: str, **options: Any) -> Selector:
    """Build the selector ``conf/selector/<method>.yaml`` describes, with ``options`` merged in."""
    config = OmegaConf.merge(load_selector_config(method), OmegaConf.create(options))
    return build_selector(config, method, convert="all")


def select(
    X: np.ndarray | Pool,
    budget: int,
    method: str = "nfpf",
    seed: int = 0,
    *,
    images: np.ndarray | None = None,
    n_classes: int | None = None,
    **options: Any,
) -> np.ndarray:
    """Choose ``budget`` samples of the unlabeled pool ``X`` to label.

    Parameters
    ----------
    X : ndarray of shape (n, d) or Pool
        Pool features (one row per sample).
    budget : int
        How many samples to select (1 <= budget <= n).
    method : str
        A selector name (see :func:`available_selectors`), e.g. "nfpf", "kmeans", "coreset".
        Supervised AL strategies (``al/*``) need labels and are refused: see
        :func:`nfpf.select_with_oracle`.
    seed : int
        A whole number from 0 to 2**32 - 1; the same seed gives the same indices.
    images : ndarray of shape (n, *image_shape), optional
        Pixels in [0, 1] for methods that model them (NFPF); defaults to none (NFPF then
        works on ``X``).
    n_classes : int, optional
        Expected number of classes, for methods whose defaults use it.
    **options
        Overrides of the selector's parameters (e.g. ``k=5`` for NFPF).

    Returns
    -------
    ndarray of shape (budget,), int64: indices into ``X`` in selection order.

    Examples
    --------
    >>> import numpy as np, nfpf
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> idx = nfpf.select(X, 10, method="coreset", seed=0)
    >>> idx.shape
    (10,)
    """
    seed = check_seed(seed)
    pool = X if isinstance(X, Pool) else Pool(features=np.asarray(X), images=images,
                                             n_classes=n_classes)
    budget = check_budget(budget, pool.n)
    if selector_entry(method).kind.label_using:
        raise ValueError(
            f"{method!r} is a supervised active-learning strategy: it needs labels, which "
            f"nfpf.select never has. Run it with nfpf.select_with_oracle(X, budget, labels, "
            f"method={method!r}) or nfpf-run selector={method}.")
    selector = make_selector(method, **options)
    return run_selection(selector, SelectionRequest(pool, budget, seed)).indices
