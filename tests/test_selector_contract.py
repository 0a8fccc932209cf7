"""Every selector checks every parameter before every selection and stores it as given.

The cases come from globbing ``conf/selector/`` (the unsupervised selectors, the supervised
AL strategies of ``al/`` and the ablation variants of ``ablation/``), so a config added later
is covered without touching this file. For every constructor parameter, invalid probe values
are derived from the parameter's declared type (its annotation, :data:`PROBES`); each probe
is set with ``set_params`` on the selector the config builds, and then either

* ``check_params`` refuses it with a one-line ``ValueError`` or ``TypeError`` that starts
  with the parameter's name and shows the value, and the next selection refuses it with the
  same message (``select`` runs the check before any work); or
* the value is one the parameter takes (a probe can be valid for one parameter and not for
  another, e.g. 0 for ``cur_hidden``), and the selection finishes.

Every case runs under a hard timeout (pytest-timeout's signal method), so a selection that
never returns fails instead of hanging the suite. A parameter that takes every probe fails
unless it is listed in :data:`ACCEPTS_ANYTHING`, with the reason. The ablation variants'
cases are marked slow: the quick loop probes the base configs, the full suite all of them.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra.utils import get_class
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from nfpf.active.oracle import Oracle
from nfpf.core.api import CONFIG_DIR, load_selector_config
from nfpf.core.selection import Pool, Selector
from nfpf.method import NFPF

# Lightning's and scikit-learn's notes about the tiny pool are not what these tests check
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Invalid values by declared type. ``None`` is added where the annotation does not allow
#: it, and a bare ``object()`` everywhere: no parameter takes one.
PROBES: dict[str, tuple[Any, ...]] = {
    "int": (0, -1, 2.5, "x", True),
    "float": ("abc", math.nan, -1.0, math.inf),
    "str": ("bogus", 3),
    "bool": ("yes", 2),
    "Mapping": ("x", 3),
}
#: Parameters that take any value, and why. Empty: every parameter has a check.
ACCEPTS_ANYTHING: dict[tuple[str, str], str] = {}
#: Seconds a case may take: rejections are immediate; a probe that is valid runs a whole
#: selection on the tiny pool (the slowest, ablation/nfpf_ref_l4000, takes a few seconds).
CASE_TIMEOUT = 120

BUDGET = 6


def config_names() -> list[str]:
    root = Path(CONFIG_DIR) / "selector"
    return sorted(str(path.relative_to(root).with_suffix("")) for path in root.rglob("*.yaml"))


def options(name: str) -> tuple[type, dict[str, Any]]:
    """The class a config builds and the options it passes (as ``nfpf-run`` composes it)."""
    config = dict(load_selector_config(name))
    return get_class(config.pop("_target_")), config


def signature_parameters(cls: type) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(cls).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def probes_for(annotation: Any) -> list[Any]:
    """The invalid probe values of a parameter declared as ``annotation`` (a string, as
    ``from __future__ import annotations`` leaves it)."""
    text = str(annotation)
    if text.startswith("Sequence["):  # a sequence of whole numbers (hidden layer widths)
        out = ["x", 3, *([value] for value in PROBES["int"])]
    else:
        out = [value for kind in re.findall(r"[A-Za-z_]+", text) for value in PROBES.get(kind, ())]
    if "None" not in text and text != "Any":
        out.append(None)
    return [*out, object()]


def cases() -> list[Any]:
    """One case per (config, parameter); the ablation variants' (the classes and checks of
    ``nfpf`` and ``nfpf_plus`` with other values, over 800 cases) are marked slow."""
    out = []
    for name in config_names():
        cls, _ = options(name)
        marks = [pytest.mark.slow] if name.startswith("ablation/") else []
        out += [pytest.param(name, parameter, marks=marks, id=f"{name}-{parameter}")
                for parameter in signature_parameters(cls)]
    return out


CASES = cases()


@pytest.fixture(scope="module")
def pool() -> Pool:
    images = np.random.default_rng(0).random((24, 4, 4)).astype(np.float32)
    return Pool(features=images.reshape(24, -1), images=images, n_classes=3)


def run(selector: Any, pool: Pool) -> np.ndarray:
    """One selection of :data:`BUDGET` samples (an AL strategy with an oracle and a model)."""
    if isinstance(selector, Selector):
        return selector.select(pool, BUDGET, seed=0)
    oracle = Oracle(np.arange(pool.n) % 3)
    return selector.select(pool, BUDGET, oracle, seed=0, model=LogisticRegression())


def check_refusal(error: Exception, parameter: str, value: Any) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert re.match(rf"'?(selector\.)?{re.escape(parameter)}\b", message), message
    assert repr(value) in message, message


@pytest.mark.timeout(CASE_TIMEOUT, method="signal")
@pytest.mark.parametrize(("name", "parameter"), CASES)
def test_every_parameter_is_checked_before_every_selection(name, parameter, pool):
    cls, config = options(name)
    built = cls(**config)
    annotation = signature_parameters(cls)[parameter].annotation
    refused, taken = [], []
    for value in probes_for(annotation):
        selector = clone(built).set_params(**{parameter: value})  # set_params does not check
        try:
            selector.check_params()
        except (ValueError, TypeError) as error:
            check_refusal(error, parameter, value)
            with pytest.raises(type(error)) as again:
                run(selector, pool)
            assert str(again.value) == str(error)
            refused.append(value)
        else:
            assert np.unique(run(selector, pool)).size == BUDGET
            taken.append(value)
    if (name, parameter) in ACCEPTS_ANYTHING:
        assert not refused, f"{parameter} has a check now: remove it from ACCEPTS_ANYTHING"
    else:
        assert refused, f"{name}: {parameter} takes every probe {taken}: give it a check"


@pytest.mark.parametrize("name", config_names())
def test_parameters_are_stored_as_given_and_round_trip(name):
    """``get_params`` returns the very objects passed, ``clone`` rebuilds an equal selector
    and the ``repr`` shows exactly the parameters that differ from the defaults (by
    scikit-learn's rule: their ``repr`` differs)."""
    cls, config = options(name)
    selector = cls(**config)
    stored = selector.get_params(deep=False)
    assert set(stored) == set(signature_parameters(cls))
    for key, value in config.items():
        assert stored[key] is value, key
    twin = clone(selector)
    assert type(twin) is cls and twin.get_params(deep=False) == stored
    assert repr(cls()) == f"{cls.__name__}()"
    shown = selector.__repr__(N_CHAR_MAX=100_000)
    defaults = {key: p.default for key, p in signature_parameters(cls).items()}
    for key, value in stored.items():
        changed = repr(value) != repr(defaults[key])
        assert bool(re.search(rf"[(\s,]{re.escape(key)}=", shown)) == changed, (key, shown)


def test_the_probes_follow_the_declared_type():
    """The table reaches every kind of parameter the selectors declare."""
    assert probes_for("int")[:5] == [0, -1, 2.5, "x", True]
    assert probes_for("int")[5] is None
    assert None not in probes_for("int | None") and None not in probes_for("Any")
    assert [p for p in probes_for("int | str | None")[:-1]] == [0, -1, 2.5, "x", True,
                                                               "bogus", 3]
    assert probes_for("Sequence[int]")[:4] == ["x", 3, [0], [-1]]
    assert math.isnan(probes_for("float")[1])
    declared = {(name, key): p.annotation for name in config_names()
                for key, p in signature_parameters(options(name)[0]).items()}
    assert [case for case, kind in declared.items() if kind is inspect.Parameter.empty] == []
    assert all(len(probes_for(kind)) >= 2 or kind == "Any" for kind in declared.values())


class StuckNFPF(NFPF):
    """NFPF whose rounds pick nothing (what ``k=0`` did before it was refused)."""

    def _pick(self, *args, **kwargs):
        picks, extra = super()._pick(*args, **kwargs)
        return picks[:0], extra


@pytest.mark.timeout(60, method="signal")
def test_a_round_that_adds_no_sample_stops_with_an_error(pool):
    selector = StuckNFPF(ref_hidden=20, kmeans_n_init=1, progress=False, device="cpu")
    with pytest.raises(RuntimeError, match=r"^NFPF: round 1 added no sample"):
        selector.select(pool, BUDGET, seed=0)
