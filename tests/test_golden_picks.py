"""Every selector's picks are the recorded ones.

``tests/fixtures/golden_picks.json`` holds the indices of every unsupervised selector, the
ablation variants (digits) and the supervised AL strategies on digits, COIL20 and USPS (raw
pixels, 2 seeds x 2 budgets), written by ``python -m tests.golden_picks``, with the package
versions and the processor they were recorded under. A refactor must leave each list as it is.

Exact where the computation is reproducible given the package versions of ``constraints.txt``
and the kernel settings of ``PINNED_KERNELS``: every selector but the gradient-trained ones
(DUAL, ALMS, on digits only), whose near-tied scores move with the last bits of the kernels
even so. For those, what holds on any machine is checked: the same picks twice in one
process, a high overlap with the recorded picks, and the recorded final training loss within
a tolerance. A pick list that changes under other package versions fails with a message
naming the versions that differ.

The picks are recomputed as they were recorded: in fresh processes under ``PINNED_KERNELS``,
not in the test process, whose torch and BLAS settings the tests before may have changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_ROOT
from golden_picks import FIXTURE, PINNED_KERNELS, TRAINED, environment_note

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first case computes all

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads(FIXTURE.read_text())
RECORDED_UNDER: dict = GOLDEN["recorded_under"]
PICKS: dict[str, list[int]] = GOLDEN["picks"]
LOSSES: dict[str, float] = GOLDEN["losses"]
#: (dataset, selector) pairs of the fixture, in its order.
CASES = list(dict.fromkeys(tuple(key.rsplit("/", 2)[0].split("/", 1)) for key in PICKS))
#: Datasets read from ../shared/data (digits comes with scikit-learn).
FROM_FILES = {"coil20", "usps"}
#: Trained selectors on another processor: the share of the recorded picks a selection must
#: keep, and the relative tolerance of its final loss (docs/architecture.md, "Golden picks":
#: with torch's unvectorised kernels DUAL kept >= 0.6 of its picks, loss within 0.8 %; ALMS
#: >= 0.9, loss within 72 %: its loss has an adversarial term and is no converging objective).
MIN_OVERLAP = {"dual": 0.5, "alms": 0.8}
LOSS_RTOL = {"dual": 0.02, "alms": 1.0}


@pytest.fixture(scope="module")
def recomputed(tmp_path_factory) -> dict:
    """The picks of every case, computed by two fresh processes side by side (digits in one,
    COIL20 and USPS in the other: about equal halves), one per core, under ``PINNED_KERNELS``."""
    datasets = ["digits", *sorted(FROM_FILES if DATA_ROOT.is_dir() else set())]
    halves = [[d for d in datasets if d == "digits"], [d for d in datasets if d != "digits"]]
    env = {**os.environ, **PINNED_KERNELS, "NFPF_DATA_ROOT": str(DATA_ROOT)}
    folder = tmp_path_factory.mktemp("golden")
    jobs = []
    for i, half in enumerate(filter(None, halves)):
        out = folder / f"picks{i}.json"
        jobs.append((out, subprocess.Popen(
            [sys.executable, "-m", "tests.golden_picks", "--out", str(out), "--repeat-trained",
             "--datasets", *half], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)))
    merged: dict = {"picks": {}, "losses": {}, "repeated": {}}
    for out, job in jobs:
        _, stderr = job.communicate(timeout=1800)
        assert job.returncode == 0, stderr[-3000:]
        part = json.loads(out.read_text())
        merged["recorded_under"] = part["recorded_under"]
        for field in ("picks", "losses", "repeated"):
            merged[field].update(part[field])
    return merged


@pytest.mark.parametrize(("dataset", "selector"), CASES, ids=[f"{d}-{s}" for d, s in CASES])
def test_picks_are_the_recorded_ones(dataset: str, selector: str, recomputed, request) -> None:
    if dataset in FROM_FILES:
        request.getfixturevalue("data_root")  # skips with a reason without ../shared/data
    recorded = {key: value for key, value in PICKS.items()
                if key.startswith(f"{dataset}/{selector}/")}
    assert len(recorded) == 4  # 2 budgets x 2 seeds
    note = environment_note(RECORDED_UNDER, recomputed["recorded_under"])
    for key, expected in recorded.items():
        got = recomputed["picks"][key]
        if selector not in TRAINED:
            assert got == expected, f"{key}: the picks are not the recorded ones. {note}"
            continue
        if key in recomputed["repeated"]:
            assert recomputed["repeated"][key] == got, f"{key}: a second selection differs"
        overlap = len(set(got) & set(expected)) / len(expected)
        assert overlap >= MIN_OVERLAP[selector], \
            f"{key}: {overlap:.2f} of the recorded picks kept. {note}"
        loss = recomputed["losses"][key]
        assert loss == pytest.approx(LOSSES[key], rel=LOSS_RTOL[selector]), \
            f"{key}: final loss {loss} vs recorded {LOSSES[key]}. {note}"
