"""How far NFPF's and NFPF+'s GPU picks agree with their CPU picks (a script, not a test).

For each dataset, seed and budget, selects once with ``device=cpu`` (the reference path) and
once on the GPU path, then reports the overlap of the two selections and the accuracy of a
linear SVC (C = 100, the project's default classifier) trained on each: the "documented,
measured agreement" of the device option (docs/benchmarks/nfpf.md). Where no CUDA GPU is
visible, ``--gpu-path-on-cpu`` runs the GPU code path on the CPU (same kernels, CPU
arithmetic), which separates what the algorithm changes from what the hardware changes.

Usage (from the project root)::

    # on a GPU; then without one
    python -m experiments.benchmarks.bench_nfpf_device --json agreement.json
    python -m experiments.benchmarks.bench_nfpf_device --gpu-path-on-cpu --json cpu.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.svm import LinearSVC

import nfpf.core.device
from nfpf.data import load_dataset
from nfpf.method.plus import NFPFPlus
from nfpf.method.progressive import NFPF

SELECTORS = {"nfpf": NFPF, "nfpf_plus": NFPFPlus}


def accuracy(dataset, picks: np.ndarray) -> float:
    model = LinearSVC(C=100, max_iter=20000).fit(dataset.flat("pool")[picks],
                                                 dataset.pool_labels[picks])
    return float((model.predict(dataset.flat("test")) == dataset.test_labels).mean())


def compare(dataset, name: str, budget: int, seed: int) -> dict:
    """One (selector, budget, seed): the CPU picks against the GPU path's."""
    pool = dataset.pool_view(dataset.flat("pool"))
    make = SELECTORS[name]
    t0 = time.perf_counter()
    cpu = make(device="cpu", progress=False).select(pool, budget, seed=seed)
    t1 = time.perf_counter()
    gpu_selector = make(device="auto", progress=False)
    gpu = gpu_selector.select(pool, budget, seed=seed)
    t2 = time.perf_counter()
    return {"dataset": dataset.name, "selector": name, "budget": budget, "seed": seed,
            "device": gpu_selector.info_["device"],
            "overlap": len(set(cpu.tolist()) & set(gpu.tolist())) / budget,
            "identical": bool(np.array_equal(cpu, gpu)),
            "accuracy_cpu": accuracy(dataset, cpu), "accuracy_gpu": accuracy(dataset, gpu),
            "seconds_cpu": round(t1 - t0, 3), "seconds_gpu": round(t2 - t1, 3)}


def summary(rows: list[dict]) -> list[str]:
    """Markdown rows: mean overlap and accuracies over the seeds of each case."""
    lines = ["| dataset | selector | B | identical | overlap | acc. CPU | acc. GPU path |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["selector"], r["budget"]) for r in rows})
    for key in keys:
        group = [r for r in rows if (r["dataset"], r["selector"], r["budget"]) == key]
        same = sum(r["identical"] for r in group)
        mean = {k: 100 * np.mean([r[k] for r in group])
                for k in ("overlap", "accuracy_cpu", "accuracy_gpu")}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {same}/{len(group)} | "
                     f"{mean['overlap']:.0f} % | {mean['accuracy_cpu']:.1f} | "
                     f"{mean['accuracy_gpu']:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "coil20", "usps"])
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS),
                        choices=list(SELECTORS))
    parser.add_argument("--per-class", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-root", default=None, help="data root (default: the usual)")
    parser.add_argument("--gpu-path-on-cpu", action="store_true",
                        help="run the GPU code path on the CPU (no CUDA GPU needed)")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.gpu_path_on_cpu:
        nfpf.core.device.compute_device = lambda device, key="device": (
            None if device == "cpu" else torch.device("cpu"))
    elif not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible: pass --gpu-path-on-cpu")
    rows = []
    for name in args.datasets:
        dataset = load_dataset(name, root=args.data_root)
        for selector in args.selectors:
            for per_class in args.per_class:
                for seed in args.seeds:
                    row = compare(dataset, selector, per_class * dataset.n_classes, seed)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n".join(summary(rows)))
    if args.json:
        command = " ".join(["python -m experiments.benchmarks.bench_nfpf_device",
                            *(sys.argv[1:] if argv is None else argv)])
        args.json.write_text(json.dumps({"command": command, "rows": rows,
                                         "torch": torch.__version__}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
