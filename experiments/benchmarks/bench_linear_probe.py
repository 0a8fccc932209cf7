"""Linear-probe benchmark on CIFAR-10 JPEG: every selector on frozen SimCLR embeddings.

Protocol (linear probe): SimCLR with the small-CNN backbone
(``features=simclr``) is trained on the unlabeled pool; every selector of
``conf/selector/*.yaml`` picks 10, 20, 50 and 100 samples per class in that embedding;
logistic regression (``classifier=logreg``) is trained on the frozen embeddings of the picks
and scored on the test split. Each job runs the stages of
:func:`nfpf.evaluation.pipeline.run` in one process (the dataset is loaded and the embedding
trained once, then cached under the same key), i.e. the same as::

    nfpf-run experiment=single logger=none dataset=cifar10_jpg dataset.max_per_class=1000 \\
        features=simclr classifier=logreg selector=<name> budget_per_class=<b> seed=<s>

The pool is a seeded subset of CIFAR-10's training split (``--pool-per-class``, 1,000 per
class by default, to keep SimCLR and the selectors within minutes on a CPU); the test split
is the full 10,000 images (``max_per_class`` >= 1,000 leaves it whole). The table goes to
``docs/benchmarks/linear_probe.md``::

    python -m experiments.benchmarks.bench_linear_probe --data-root ../shared/data
    python -m experiments.benchmarks.bench_linear_probe --selectors random kmeans --seeds 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SELECTOR_DIR = PROJECT_ROOT / "conf" / "selector"
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "benchmarks" / "linear_probe.md"
RAW_ROW = "random (raw pixels)"

log = logging.getLogger("bench_linear_probe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("NFPF_DATA_ROOT"),
                   help="data root holding cifar10_jpg/ (default: $NFPF_DATA_ROOT or "
                        "../shared/data beside the checkout)")
    p.add_argument("--work-dir", default="outputs/bench_linear_probe",
                   help="run outputs and the feature/selection cache (reused on rerun)")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="markdown table to write")
    p.add_argument("--pool-per-class", type=int, default=1000,
                   help="pool images per class (seeded subset of the 5,000); >= 1000 keeps "
                        "the full test split")
    p.add_argument("--epochs", type=int, default=20, help="SimCLR epochs (features.epochs)")
    p.add_argument("--train-samples", type=int, default=5000,
                   help="SimCLR trains on a seeded subset of this many pool images "
                        "(features.max_train_samples; every pool image is embedded); 0 = all")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50, 100],
                   help="budgets per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--selectors", nargs="+", default=None,
                   help="selector names (default: every conf/selector/*.yaml)")
    p.add_argument("--threads", type=int, default=2, help="torch / BLAS threads")
    p.add_argument("--no-raw-reference", action="store_true",
                   help="skip the random-selection rows on raw pixels")
    p.add_argument("--extra", nargs="*", default=[],
                   help="extra Hydra overrides for every run (e.g. features.width=16)")
    return p.parse_args(argv)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nfpf.core.api import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def load_setup(args: argparse.Namespace, work: Path, features: str):
    """Dataset, pool/test features and classifier config, as ``nfpf-run`` would build them.

    The features are cached under ``work/cache`` with the key :func:`nfpf.evaluation.pipeline.run`
    uses (dataset + features configs), so an ``nfpf-run`` with the same overrides and
    ``paths.output_dir=work`` reuses them.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nfpf.features import compute_features
    from nfpf.io import config_hash

    overrides = [
        "experiment=single", "logger=none", "dataset=cifar10_jpg",
        f"dataset.max_per_class={args.pool_per_class}", "dataset.progress=false",
        f"features={features}", "classifier=logreg", f"paths.output_dir={work}",
        *([f"features.epochs={args.epochs}",
           f"features.max_train_samples={args.train_samples or 'null'}"]
          if features == "simclr" else []),
        # the embedding's own options do not apply to the raw pixels
        *(o for o in args.extra if features == "simclr" or not o.startswith("features.")),
    ]
    if args.data_root:
        overrides.append(f"paths.data_root={Path(args.data_root).resolve()}")
    cfg = compose(overrides)
    dataset = instantiate(cfg.dataset)
    plain = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "features")}
    start = time.time()
    pool, test = compute_features(instantiate(cfg.features), dataset.pool_images,
                                  dataset.test_images, Path(cfg.paths.cache_dir),
                                  config_hash(plain))
    seconds = time.time() - start
    log.info("features=%s: pool %s, test %s (%.0f s)", features, pool.shape, test.shape,
             seconds)
    return cfg, dataset, pool, test, seconds


def run_job(cfg, dataset, pool: np.ndarray, test: np.ndarray, selector: str, budget: int,
            seed: int) -> dict:
    """Select ``budget`` samples with ``selector`` and score logistic regression on them."""
    from hydra.utils import instantiate

    from nfpf.core.api import make_selector
    from nfpf.evaluation.evaluate import evaluate_selection

    chooser = make_selector(selector)
    start = time.perf_counter()
    indices = chooser.select(dataset.pool_view(pool), budget, seed=seed)
    seconds = time.perf_counter() - start
    metrics = evaluate_selection(instantiate(cfg.classifier), pool, dataset.pool_labels,
                                 indices, test, dataset.test_labels, dataset.n_classes)
    return {"selector": selector, "budget": budget, "seed": seed, "metrics": metrics,
            "seconds": seconds, "info": getattr(chooser, "info_", {})}


def shown_command(argv: list[str]) -> str:
    """The command line with machine paths replaced by placeholders."""
    shown, after_root = [], False
    for a in argv:
        if after_root:
            a, after_root = "<data-root>", False
        elif a == "--data-root":
            after_root = True
        elif a.startswith("--data-root="):
            a = "--data-root=<data-root>"
        elif os.path.isabs(a.split("=", 1)[-1]):
            a = a.split("=", 1)[0] + "=<path>" if "=" in a else "<path>"
        shown.append(a)
    return " ".join(["python -m experiments.benchmarks.bench_linear_probe", *shown])


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    arr = 100 * np.asarray(values)
    if len(arr) == 1:
        return f"{arr[0]:.1f}"
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}"


def markdown_table(selectors: list[str], budgets: list[int], header: str,
                   cell: Callable[[str, int], str]) -> list[str]:
    """A markdown table: one row per selector, one column per budget per class."""
    lines = [f"| selector | {' | '.join(header.format(b=b, B=10 * b) for b in budgets)} |",
             "|---|" + "---:|" * len(budgets)]
    lines += [f"| {s} | " + " | ".join(cell(s, b) for b in budgets) + " |" for s in selectors]
    return lines


def protocol_lines(args: argparse.Namespace, meta: dict) -> list[str]:
    """The heading, command and protocol paragraph of the table file."""
    return [
        "# Linear-probe benchmark: CIFAR-10 JPEG, SimCLR (small CNN) embeddings",
        "",
        "Generated by `experiments/benchmarks/bench_linear_probe.py`; do not edit by hand. "
        "Command:",
        "",
        f"    {meta['command']}",
        "",
        f"{meta['date']} · {meta['machine']} · torch threads {args.threads} · load average "
        f"{meta['load_before']} before, {meta['load_after']} after · total {meta['total_min']:.0f} "
        "min.",
        "",
        "Protocol (linear probe): `features=simclr` (small CNN, "
        f"{meta['embedding_dim']}-d, standardised; {args.epochs} epochs on "
        f"{meta['train_images']} pool images without labels, {meta['feature_seconds']:.0f} s; "
        "every pool image embedded) → each selector picks B = budget × 10 "
        "samples in that embedding → `classifier=logreg` (C = 1) on the frozen embeddings of "
        "the picks → accuracy on the test split. The stages are those of "
        "`nfpf.evaluation.pipeline.run` "
        "(`load_dataset`, `compute_features` with its cache key, `Selector.select`, "
        "`evaluate_selection`), run in one process so the dataset is loaded once.",
        "",
        f"- Pool: a seeded subset of {meta['n_pool']:,} training images "
        f"({args.pool_per_class} per class, `dataset.max_per_class={args.pool_per_class}`); "
        f"test: {meta['n_test']:,} images"
        + (" (the full test split)." if meta["n_test"] == 10000 else
           f" ({min(args.pool_per_class, 1000)} per class)."),
        f"- Seeds: {', '.join(map(str, args.seeds))} (selection seed; the embedding is the same "
        "for all, `features.seed=0`). Cells: mean ± std of test accuracy (%) over seeds; bold: "
        "best mean of the column.",
        f"- References: logistic regression on the embeddings of all {meta['n_pool']:,} "
        f"labelled pool images: {meta['full_accuracy']}; `random (raw pixels)` is random "
        "selection with `features=raw` (the same classifier on [-1, 1] pixels).",
        "",
    ]


def write_table(args: argparse.Namespace, records: list[dict], failures: list[dict],
                meta: dict, path: Path) -> None:
    selectors = sorted({r["selector"] for r in records} | {f["selector"] for f in failures})
    by_cell: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        by_cell.setdefault((r["selector"], int(r["budget_per_class"])), []).append(r)

    def values(s: str, b: int, key: str) -> list[float]:
        """A metric (or the selection's "seconds") of every seed of a cell."""
        return [r["seconds"] if key == "seconds" else r["metrics"][key]
                for r in by_cell.get((s, b), [])]

    best = {b: max((np.mean(values(s, b, "accuracy")) for s in selectors
                    if (s, b) in by_cell), default=None) for b in args.budgets}

    def accuracy_cell(s: str, b: int) -> str:
        accuracies = values(s, b, "accuracy")
        if accuracies and best[b] is not None and np.isclose(np.mean(accuracies), best[b]):
            return f"**{fmt(accuracies)}**"
        return fmt(accuracies)

    def cost_cell(s: str, b: int) -> str:
        if (s, b) not in by_cell:
            return "–"
        return (f"{np.mean(values(s, b, 'seconds')):.1f} s, "
                f"{np.mean(values(s, b, 'classes_covered')):.1f}")

    lines = protocol_lines(args, meta)
    lines += markdown_table(selectors, args.budgets, "{b}/class (B={B})", accuracy_cell)
    lines += ["", "Selection wall time (s, mean over seeds; on this shared 2-core machine) and "
              "classes covered by the picks (mean):", ""]
    lines += markdown_table(selectors, args.budgets, "{b}/class", cost_cell)
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {f['selector']} {f['budget']} seed {f['seed']}: {f['error']}"
                  for f in failures]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    log.info("wrote %s", path)


def recorded_feature_seconds(work: Path, settings: dict, seconds: float) -> float:
    """The embedding's training time: the one recorded for these settings (a resumed run
    loads the cached embedding in no time), else ``seconds``, recorded."""
    timing = work / "feature_seconds.json"
    if timing.is_file() and json.loads(timing.read_text()).get("settings") == settings:
        return json.loads(timing.read_text())["seconds"]
    timing.write_text(json.dumps({"settings": settings, "seconds": seconds}))
    return seconds


def finished_jobs(done_path: Path, settings: dict) -> dict[tuple, dict]:
    """The jobs of an interrupted benchmark with the same settings, by (selector, budget,
    seed): finished jobs are appended to a JSON-lines file, so a benchmark resumes."""
    done: dict[tuple, dict] = {}
    if done_path.is_file():
        for line in done_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("settings") == settings:
                done[(rec["selector"], rec["budget"], rec["seed"])] = rec
    return done


def run_jobs(args: argparse.Namespace, work: Path, setups: dict, jobs: list[tuple],
             settings: dict) -> tuple[list[dict], list[dict]]:
    """Run (or reuse) every (selector, budget per class, seed) job: (records, failures)."""
    done_path = work / "jobs.jsonl"
    done = finished_jobs(done_path, settings)
    n_classes = setups["simclr"][1].n_classes
    records, failures = [], []
    for i, (s, b, seed) in enumerate(jobs, 1):
        key = (s, b * n_classes, seed)
        if key in done:
            records.append(done[key])
            continue
        raw = s == RAW_ROW
        if raw and "raw" not in setups:
            setups["raw"] = load_setup(args, work, "raw")
        cfg_j, ds_j, pool_j, test_j, _ = setups["raw" if raw else "simclr"]
        start = time.time()
        try:
            rec = run_job(cfg_j, ds_j, pool_j, test_j, "random" if raw else s,
                          b * n_classes, seed)
        except Exception as error:  # one broken selector must not stop the table
            log.exception("%s %d/class seed %d failed", s, b, seed)
            failures.append({"selector": s, "budget": f"{b}/class", "seed": seed,
                             "error": f"{type(error).__name__}: {error}"})
            continue
        rec.update(selector=s, budget_per_class=b, settings=settings)
        records.append(rec)
        with done_path.open("a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        log.info("[%d/%d] %s %d/class seed %d: accuracy %.4f (select %.1f s, total %.0f s)",
                 i, len(jobs), s, b, seed, rec["metrics"]["accuracy"], rec["seconds"],
                 time.time() - start)
    return records, failures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    import threadpoolctl
    import torch
    from omegaconf import OmegaConf

    from nfpf.io import config_hash

    torch.set_num_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)
    selectors = args.selectors or sorted(p.stem for p in SELECTOR_DIR.glob("*.yaml"))
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load_before = " / ".join(f"{v:.1f}" for v in os.getloadavg())

    setups = {"simclr": load_setup(args, work, "simclr")}
    cfg, dataset, pool, test, feature_seconds = setups["simclr"]
    settings = {"pool_per_class": args.pool_per_class, "epochs": args.epochs,
                "train_samples": args.train_samples, "extra": args.extra,
                "features": config_hash(OmegaConf.to_container(cfg.features, resolve=True))}
    feature_seconds = recorded_feature_seconds(work, settings, feature_seconds)
    full = evaluate_all(cfg, dataset, pool, test)
    log.info("all-pool reference: accuracy %.4f", full)

    jobs = [(s, b, seed) for s in selectors for b in args.budgets for seed in args.seeds]
    if not args.no_raw_reference:
        jobs += [(RAW_ROW, b, seed) for b in args.budgets for seed in args.seeds]
    records, failures = run_jobs(args, work, setups, jobs, settings)

    n_pool = len(pool)
    meta = {
        "command": shown_command(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}, torch {torch.__version__}",
        "load_before": load_before,
        "load_after": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
        "total_min": (time.time() - t0) / 60,
        "embedding_dim": int(pool.shape[1]),
        "train_images": f"{min(args.train_samples or n_pool, n_pool):,}",
        "feature_seconds": feature_seconds,
        "n_pool": n_pool,
        "n_test": len(test),
        "full_accuracy": f"{100 * full:.1f} %",
    }
    (work / "results.json").write_text(json.dumps(
        {"meta": meta, "records": records, "failures": failures}, indent=1, default=str))
    write_table(args, records, failures, meta, Path(args.output))


def evaluate_all(cfg, dataset, pool: np.ndarray, test: np.ndarray) -> float:
    """Accuracy of the classifier trained on every labelled pool sample (upper reference)."""
    from hydra.utils import instantiate

    from nfpf.evaluation.evaluate import evaluate_selection

    metrics = evaluate_selection(instantiate(cfg.classifier), pool, dataset.pool_labels,
                                 np.arange(len(pool)), test, dataset.test_labels,
                                 dataset.n_classes)
    return metrics["accuracy"]


if __name__ == "__main__":
    main()
