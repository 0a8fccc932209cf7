"""Record (``python -m tests.golden_picks``) or recompute the golden picks.

The picks of every selector (the unsupervised ones of ``conf/selector/``, their ablation
variants on digits, and the supervised AL strategies of ``conf/selector/al/``) on digits,
COIL20 and USPS, 2 seeds x 2 budgets, on raw pixels, computed in one fresh process with
:data:`PINNED_KERNELS` (two threads, and numpy's, OpenBLAS's, MKL's and torch's kernels held
at one x86-64 level, so that an AVX-512 processor computes what an AVX2 one does). The fixture
also holds what they were recorded under (package versions, processor, kernel settings) and,
for the gradient-trained selectors (:data:`TRAINED`, on digits only), the final training loss
of each selection: their picks move with the last bits of the floating-point kernels even so,
and ``tests/test_golden_picks.py`` checks them by what holds on any machine (the same picks
twice in one process, a high overlap with the recorded picks, the recorded loss within a
tolerance) and every other selector's picks exactly.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "golden_picks.json"
DATASETS = {"digits": (1, 3), "coil20": (1, 3), "usps": (1, 3)}  # budgets per class
SEEDS = (0, 1)
SELECTORS = ("random", "kmeans", "coreset", "typiclust", "probcover", "usl", "ted",
             "dual", "alms", "nfpf", "nfpf_plus", "maxherding", "activeft", "bilaf")
ACTIVE = ("al/random", "al/entropy", "al/margin", "al/least_confidence", "al/coreset",
          "al/badge", "al/typiclust", "al/uherding")
#: Selectors trained by gradient descent: their picks move with the processor's BLAS kernels
#: (near-tied scores), so they are recorded with their final loss and computed twice. Their
#: checks are statistical and they cost half the fixture's time, so they run on digits only.
TRAINED = ("dual", "alms")
TRAINED_DATASETS = ("digits",)
#: The environment the picks are computed under. Without it the same packages pick
#: differently on an AVX-512 processor than on an AVX2 one: numpy's SIMD loops, OpenBLAS's and
#: MKL's kernels and torch's vectorised ops each dispatch on the processor, and near-tied
#: scores (e.g. the SVC's vote counts of the ``al/*`` strategies) flip with the last bit.
PINNED_KERNELS = {
    "OMP_NUM_THREADS": "2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "MKL_CBWR": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}
#: The packages whose versions decide the picks (a change of any may move them).
PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "pytorch-lightning")


def selector_names(dataset: str) -> list[str]:
    from nfpf.core.api import CONFIG_DIR

    names = [name for name in SELECTORS
             if name not in TRAINED or dataset in TRAINED_DATASETS] + list(ACTIVE)
    if dataset == "digits":
        names += sorted(f"ablation/{p.stem}" for p in (CONFIG_DIR / "selector" / "ablation")
                        .glob("*.yaml"))
    return names


def environment() -> dict[str, object]:
    """What the picks are computed under: package versions, processor, kernel settings."""
    return {
        "versions": {"python": platform.python_version(),
                     **{name: importlib.metadata.version(name) for name in PACKAGES}},
        "processor": processor_name(),
        "machine": platform.machine(),
        "kernels": {name: os.environ.get(name, "unset") for name in PINNED_KERNELS},
    }


def processor_name() -> str:
    """The CPU model as the operating system names it (``/proc/cpuinfo`` on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment_note(recorded: dict, now: dict) -> str:
    """Why recorded picks may differ: the package versions and processor that changed."""
    changed = [f"{name} {recorded['versions'].get(name)} -> {version}"
               for name, version in now["versions"].items()
               if recorded["versions"].get(name) != version]
    if recorded.get("processor") != now.get("processor"):
        changed.append(f"processor {recorded.get('processor')!r} -> {now.get('processor')!r}")
    if not changed:
        return ("Same package versions and processor as recorded: the code changed the picks "
                "(a refactor must not).")
    return ("Recorded under other versions: " + ", ".join(changed) + ". Install with "
            "`pip install -e \".[dev]\" -c constraints.txt` (README) to test against the "
            "recorded versions; moving a pin means checking the new picks and re-recording "
            "them with `python -m tests.golden_picks`.")


def load_pool(dataset: str):
    from nfpf.data import load_dataset
    from nfpf.features import Raw

    data = load_dataset(dataset)
    features = Raw().fit_transform(data.pool_images)
    return data, data.pool_view(np.asarray(features))


def picks(name: str, budget: int, seed: int, data, pool) -> tuple[list[int], float | None]:
    """One selection's indices, and the final training loss of a trained selector."""
    import nfpf
    from nfpf.core.api import make_selector

    if name.startswith("al/"):
        chosen = nfpf.select_with_oracle(pool, budget, data.pool_labels, method=name,
                                         seed=seed)
        return [int(i) for i in np.asarray(chosen)], None
    selector = make_selector(name)
    chosen = selector.select(pool, budget, seed=seed)
    loss = selector.info_.get("final_loss") if name in TRAINED else None
    return [int(i) for i in np.asarray(chosen)], loss


def compute(datasets=DATASETS, names=None, repeat_trained: bool = False) -> dict:
    """The picks (and losses) of ``names`` (default every selector) on ``datasets``.

    With ``repeat_trained`` the first selection of each trained selector on each dataset is
    made a second time in this process and kept under ``"repeated"``.
    """
    out: dict = {"picks": {}, "losses": {}, "repeated": {}, "seconds": {}}
    for dataset, per_class in datasets.items():
        data, pool = load_pool(dataset)
        for name in names or selector_names(dataset):
            t = time.perf_counter()
            for budget in (c * data.n_classes for c in per_class):
                for seed in SEEDS:
                    key = f"{dataset}/{name}/{budget}/{seed}"
                    out["picks"][key], loss = picks(name, budget, seed, data, pool)
                    if name in TRAINED:
                        out["losses"][key] = loss
                        if repeat_trained and (budget, seed) == (per_class[0] * data.n_classes,
                                                                 SEEDS[0]):  # one per dataset
                            out["repeated"][key] = picks(name, budget, seed, data, pool)[0]
            out["seconds"][f"{dataset}/{name}"] = round(time.perf_counter() - t, 2)
            print(f"{dataset} {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out


def added_to(fixture: dict) -> dict:
    """The fixture that ``--add`` extends, refused when it was recorded under other package
    versions, processor or kernel settings than this process runs (its picks would then be a mixture
    of two environments)."""
    recorded = {key: value for key, value in fixture["recorded_under"].items() if key != "date"}
    if recorded != environment():
        raise SystemExit(f"golden_picks --add: the fixture was recorded under {recorded}, this "
                         f"process runs under {environment()}; record every selector instead "
                         "(no --add)")
    return fixture


def main(argv: list[str] | None = None) -> None:
    """Record the fixture, or (``--out``) write the picks of ``--datasets`` elsewhere."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=DATASETS)
    parser.add_argument("--names", nargs="+", default=None,
                        help="only these selectors (default: every one)")
    parser.add_argument("--repeat-trained", action="store_true",
                        help="make each trained selection twice (the test's check)")
    parser.add_argument("--add", action="store_true",
                        help="add the picks of --names to the fixture, keeping the rest "
                             "(refused unless this environment is the one it was recorded under)")
    args = parser.parse_args(argv)
    if any(os.environ.get(name) != value for name, value in PINNED_KERNELS.items()):
        # numpy, OpenBLAS and torch read these when they load: run again under them
        os.execve(sys.executable, [sys.executable, "-m", "tests.golden_picks",
                                   *(sys.argv[1:] if argv is None else argv)],
                  {**os.environ, **PINNED_KERNELS})
    if args.add and (args.names is None or args.out != FIXTURE):
        parser.error("--add needs --names and writes the fixture itself (no --out)")
    kept = added_to(json.loads(FIXTURE.read_text())) if args.add else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chosen = {name: DATASETS[name] for name in args.datasets}
    result = compute(chosen, args.names, args.repeat_trained)
    record = {"recorded_under": {**environment(), "date": date.today().isoformat()},
              "picks": {**kept.get("picks", {}), **result["picks"]},
              "losses": {**kept.get("losses", {}), **result["losses"]}}
    if args.out != FIXTURE:
        record.update(repeated=result["repeated"], seconds=result["seconds"])
    args.out.write_text(json.dumps(record, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
