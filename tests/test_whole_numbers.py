"""One rule for whole numbers (nfpf.core.selection.as_whole), one validator
(check_whole, with check_seed and check_budget built on it), called where each value enters.

Every place that takes a count from a user (the pool's number of classes, the k-means and
kNN kernels, image sizes, nfpf-select's options, the oracle's label budget, seeds and
budgets) accepts exactly the whole numbers of the rule and refuses the rest with one line
naming its key; and no module but nfpf.core.selection spells a whole-number test of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nfpf.active import Oracle
from nfpf.app.options import ContactSheetOptions, ImageOptions, SelectError, check_request
from nfpf.core import kernels
from nfpf.core.selection import Pool, as_whole, check_budget, check_seed, check_whole
from nfpf.data.images import parse_image_size

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: (value, the int it is, or None: not a whole number), written out by hand.
TABLE = [
    (3, 3), (np.int64(3), 3), (np.uint8(3), 3), (3.0, 3), (np.float32(3.0), 3), ("3", 3),
    ("3.0", 3), (2**40, 2**40),
    (2.5, None), ("2.5", None), ("three", None), (True, None), (np.bool_(True), None),
    (None, None), (float("nan"), None), (float("inf"), None), ([3], None), ("", None),
]


@pytest.mark.parametrize("value,whole", TABLE, ids=[repr(v) for v, _ in TABLE])
def test_the_rule(value, whole):
    got = as_whole(value)
    assert got == whole and (got is None or type(got) is int)


def test_check_whole_bounds_other_values_and_message():
    assert check_whole("n", "4", low=1, high=4) == 4
    assert check_whole("n", None, low=1, also=(None,)) is None
    assert check_whole("n", "auto", also=("auto",)) == "auto"
    with pytest.raises(ValueError, match=r"^n must be a whole number from 1 to 4 \(a hint\); "
                                         r"got 5\. Do this\.$"):
        check_whole("n", 5, low=1, high=4, hint=" (a hint)", fix="Do this.")
    with pytest.raises(ValueError, match=r"^n must be a whole number >= 0 or None; got -1\.$"):
        check_whole("n", -1, low=0, also=(None,))


X10 = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)


def _request_budget(value):
    # the budget is checked before anything is read: a missing input fails after it
    check_request("no/such/input", value, "out", seed=0, n_classes=None, images=None,
                  overwrite=False, label_studio=None, contact_sheet=None, cache=False,
                  cache_dir=None, selector="random", selector_name=None, features="raw",
                  features_name=None, transform_features=False, progress=False)


#: Each place: its key, and a call that takes the value where it enters (low bound 1, or 0).
PLACES = {
    "seed": (0, check_seed),
    "budget": (1, lambda v: check_budget(v, None)),
    "n_classes": (1, lambda v: Pool(X10, n_classes=v).n_classes),
    "n_clusters": (1, lambda v: len(kernels.kmeans(X10, v, n_init=1).centers)),
    "max_iter": (1, lambda v: kernels.kmeans(X10, 2, max_iter=v)),
    "n_init": (1, kernels.resolve_n_init),
    "k": (1, lambda v: kernels.check_k(v, 10)),
    "image_size": (1, lambda v: parse_image_size(v)[0]),
    "image_size[1]": (1, lambda v: parse_image_size([4, v])[1]),
    "num_workers": (0, lambda v: ImageOptions(num_workers=v).check()),
    "contact_sheet.thumb_size": (1, lambda v: ContactSheetOptions(thumb_size=v).check()),
    "Oracle budget": (1, lambda v: Oracle(np.zeros(10), budget=v).budget),
    "budget ": (1, _request_budget),  # nfpf-select's
}


def refused(key: str, call, value) -> bool:
    """Whether ``call(value)`` refuses the value with a one-line error naming ``key``."""
    try:
        call(value)
    except (ValueError, SelectError) as error:
        message = str(error)
        if message.startswith(key.strip() + " must be"):
            assert "\n" not in message
            return True
        if key.strip() == "budget" and "does not exist" in message:
            return False  # nfpf-select got past the budget
        raise
    return False


@pytest.mark.parametrize("key", PLACES)
def test_every_place_follows_the_one_rule(key):
    low, call = PLACES[key]
    for value, whole in TABLE:
        if value is None and key in ("n_classes", "Oracle budget"):
            assert not refused(key, call, value)  # None: unknown, or no bound
        elif whole is None:
            assert refused(key, call, value), (key, value)
        elif whole <= 9:
            assert not refused(key, call, value), (key, value)
    assert refused(key, call, low - 1), key
    assert not refused(key, call, low + 1), key
    if key in ("n_classes", "k", "image_size", "Oracle budget", "seed"):
        assert call(3.0) == 3 and type(call("3")) is int  # the int it stands for


def _sources() -> dict[str, str]:
    found = {}
    for folder, package in {"nfpf": "nfpf", "baselines": "nfpf.baselines",
                            "experiments/cli": "nfpf.cli"}.items():
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(PROJECT_ROOT / folder).with_suffix("").parts)
            found[".".join([package, *[p for p in parts if p != "__init__"]])] = \
                path.read_text(encoding="utf-8")
    return found


#: Modules that still test whole numbers their own way: none; no module may join this list.
NOT_YET_MOVED: set[str] = set()
#: What a whole-number test of its own looks like.
OWN_TEST = re.compile(r"is_integer\(\)|\bint\(([A-Za-z_][\w.]*)\) != \1\b")


def test_one_home_for_the_rule_and_the_places_call_the_validator():
    sources = _sources()
    own = {name for name, source in sources.items() if OWN_TEST.search(source)}
    assert own - NOT_YET_MOVED == {"nfpf.core.selection"}
    for module in ("nfpf.core.kernels", "nfpf.app.options", "nfpf.data.images",
                   "nfpf.active.oracle", "nfpf.core.selection"):
        assert re.search(r"\bcheck_whole\(", sources[module]), module
