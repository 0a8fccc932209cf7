"""Record (``python -m tests.golden_picks``) or recompute the golden picks.

The picks of every selector (the unsupervised ones of ``conf/selector/``, their ablation
variants on digits, and the supervised AL strategies of ``conf/selector/al/``) on digits,
COIL20 and USPS, 2 seeds x 2 budgets, on raw pixels. They were recorded before the package
was reorganised into layers (``python -m tests.golden_picks``, in a fresh process with
``OMP_NUM_THREADS=2`` on 2 cores); ``tests/test_golden_picks.py`` recomputes them the same
way and checks that every pick is still the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "golden_picks.json"
DATASETS = {"digits": (1, 3), "coil20": (1, 3), "usps": (1, 3)}  # budgets per class
SEEDS = (0, 1)
SELECTORS = ("random", "kmeans", "coreset", "typiclust", "probcover", "usl", "ted",
             "dual", "alms", "nfpf", "nfpf_plus")
ACTIVE = ("al/random", "al/entropy", "al/margin", "al/least_confidence", "al/coreset",
          "al/badge", "al/typiclust")


def selector_names(dataset: str) -> list[str]:
    from nfpf.core.api import CONFIG_DIR

    names = list(SELECTORS) + list(ACTIVE)
    if dataset == "digits":
        names += sorted(f"ablation/{p.stem}" for p in (CONFIG_DIR / "selector" / "ablation")
                        .glob("*.yaml"))
    return names


def load_pool(dataset: str):
    from nfpf.data import load_dataset
    from nfpf.features import Raw

    data = load_dataset(dataset)
    features = Raw().fit_transform(data.pool_images)
    return data, data.pool_view(np.asarray(features))


def picks(dataset: str, name: str, budget: int, seed: int, data, pool) -> list[int]:
    import nfpf

    if name.startswith("al/"):
        chosen = nfpf.select_with_oracle(pool, budget, data.pool_labels, method=name,
                                         seed=seed)
    else:
        chosen = nfpf.select(pool, budget, method=name, seed=seed)
    return [int(i) for i in np.asarray(chosen)]


def compute(datasets=DATASETS, names=None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for dataset, per_class in datasets.items():
        data, pool = load_pool(dataset)
        for name in names or selector_names(dataset):
            t = time.perf_counter()
            for budget in (c * data.n_classes for c in per_class):
                for seed in SEEDS:
                    out[f"{dataset}/{name}/{budget}/{seed}"] = picks(
                        dataset, name, budget, seed, data, pool)
            print(f"{dataset} {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    """Record the fixture, or (``--out``) write the picks of ``--datasets`` elsewhere."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=DATASETS)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chosen = {name: DATASETS[name] for name in args.datasets}
    args.out.write_text(json.dumps(compute(chosen), indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
