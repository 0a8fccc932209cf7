"""Every selector's picks are those recorded before the package was reorganised.

``tests/fixtures/golden_picks.json`` holds the indices of every unsupervised selector, the
ablation variants (digits) and the supervised AL strategies on digits, COIL20 and USPS (raw
pixels, 2 seeds x 2 budgets), written by ``python -m tests.golden_picks`` from the code as it
was before any module moved. A refactor must leave each list exactly as it is.

The picks are recomputed as they were recorded: in one fresh process, not in the test
process, whose torch and BLAS settings the tests before may have changed (DUAL's ranking has
near-ties on COIL20 that such changes reorder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_ROOT
from golden_picks import FIXTURE

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOLDEN: dict[str, list[int]] = json.loads(FIXTURE.read_text())
#: (dataset, selector) pairs of the fixture, in its order.
CASES = list(dict.fromkeys(tuple(key.rsplit("/", 2)[0].split("/", 1)) for key in GOLDEN))
#: Datasets read from ../shared/data (digits comes with scikit-learn).
FROM_FILES = {"coil20", "usps"}


@pytest.fixture(scope="module")
def recomputed(tmp_path_factory) -> dict[str, list[int]]:
    datasets = ["digits", *sorted(FROM_FILES if DATA_ROOT.is_dir() else set())]
    out = tmp_path_factory.mktemp("golden") / "picks.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "NFPF_DATA_ROOT": str(DATA_ROOT)}
    subprocess.run([sys.executable, "-m", "tests.golden_picks", "--out", str(out),
                    "--datasets", *datasets], cwd=PROJECT_ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    return json.loads(out.read_text())


@pytest.mark.parametrize(("dataset", "selector"), CASES, ids=[f"{d}-{s}" for d, s in CASES])
def test_picks_are_the_recorded_ones(dataset: str, selector: str, recomputed, request) -> None:
    if dataset in FROM_FILES:
        request.getfixturevalue("data_root")  # skips with a reason without ../shared/data
    recorded = {key: value for key, value in GOLDEN.items()
                if key.startswith(f"{dataset}/{selector}/")}
    assert len(recorded) == 4  # 2 budgets x 2 seeds
    for key, expected in recorded.items():
        assert recomputed[key] == expected, key
