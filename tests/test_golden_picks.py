"""Every selector's picks are those recorded before the package was reorganised.

``tests/fixtures/golden_picks.json`` holds the indices of every unsupervised selector, the
ablation variants (digits) and the supervised AL strategies on digits, COIL20 and USPS (raw
pixels, 2 seeds x 2 budgets), written by ``python -m tests.golden_picks`` from the code as it
was before any module moved. A refactor must leave each list exactly as it is.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from golden_picks import FIXTURE, load_pool, picks

pytestmark = pytest.mark.slow

GOLDEN: dict[str, list[int]] = json.loads(FIXTURE.read_text())


def _cases() -> list[tuple[str, str]]:
    """(dataset, selector) pairs of the fixture, in its order."""
    pairs = dict.fromkeys(tuple(key.rsplit("/", 2)[0].split("/", 1)) for key in GOLDEN)
    return list(pairs)


@functools.cache
def _pool(dataset: str):
    return load_pool(dataset)


@pytest.mark.parametrize(("dataset", "selector"), _cases(),
                         ids=[f"{d}-{s}" for d, s in _cases()])
def test_picks_are_the_recorded_ones(dataset: str, selector: str, request) -> None:
    if dataset != "digits":
        request.getfixturevalue("data_root")  # COIL20 and USPS come from ../shared/data
    data, pool = _pool(dataset)
    recorded = {key: value for key, value in GOLDEN.items()
                if key.startswith(f"{dataset}/{selector}/")}
    assert len(recorded) == 4  # 2 budgets x 2 seeds
    for key, expected in recorded.items():
        budget, seed = (int(part) for part in key.rsplit("/", 2)[1:])
        got = picks(dataset, selector, budget, seed, data, pool)
        np.testing.assert_array_equal(got, expected, err_msg=key)
