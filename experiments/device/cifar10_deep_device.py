"""The CIFAR-10 deep table (``experiment=cifar10_deep``) on a lent GPU machine, in calls of
at most 10 minutes that continue one another.

A call does what its ``--budget`` allows and writes its state under ``--out``; the next call
continues from it once it is copied into ``--state`` (which travels with the checkout):

1. **SimCLR, once.** The experiment's SimCLR (ResNet-18, CIFAR stem) is trained on the 50,000
   pool images and saved in float16 parts of at most 15 MB (``simclr/part-*.pt``), with the
   embedding's quality (kNN, k = 20, cosine, and a linear probe, on the test split with all
   labels) in ``embedding.json``. Every run of every call embeds the pool with that saved
   network (``features.weights=<state>/simclr features.epochs=0``), so all selections
   share one embedding, recomputed in seconds instead of carried (its 100 MB would not fit).
2. **The sweep.** ``nfpf-run experiment=cifar10_deep`` runs until the budget, resuming from
   the runs of earlier calls (unpacked from ``runs.tar.gz``); at the budget it is
   interrupted, which loses only the runs in flight (results are written atomically).
3. **The state.** Every finished run (``result.json``, ``indices.npy``, ``run.log``) goes
   into ``runs.tar.gz``, the counts into ``progress.json``; once the sweep is complete, the
   report (``report.md``, ``summary.csv``) too.

On the development machine, before the first call: ``../shared/device/prepare cifar10_jpg``.
Each call (``carry: [".device"]``, ``timeout_s: 590``)::

    source .device/env.sh; python3 -m experiments.device.cifar10_deep_device --out $OUT

Between calls: ``mkdir -p .device/state && cp -r <files_at>/simclr <files_at>/runs.tar.gz
.device/state/``. The calls needed: one for SimCLR and the first runs, then as many as the
sweep's size and ``progress.json``'s rate say. Extra ``nfpf-run`` overrides follow ``--``
(e.g. a CPU dry run: ``-- trainer=cpu features.backbone=small_cnn dataset.max_per_class=20``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "cifar10_deep"
PART_BYTES = 15 * 2**20  # what one file of a device call's output may hold (16 MB)
RUN_FILES = ("result.json", "indices.npy", "run.log", "failed.json")


def compose(overrides: list[str], hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nfpf.core.api import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[f"experiment={EXPERIMENT}", *overrides],
                             return_hydra_config=hydra)


def train_simclr(overrides: list[str], target: Path, out: Path) -> None:
    """Train the experiment's SimCLR on the pool, save it in parts, measure the embedding."""
    from hydra.utils import instantiate

    cfg = compose(overrides)
    dataset = instantiate(cfg.dataset)
    space = instantiate(cfg.features)
    t0 = time.perf_counter()
    pool = space.fit_transform(dataset.pool_images)
    seconds = time.perf_counter() - t0
    space.save_weights(target, part_bytes=PART_BYTES)
    test = space.transform(dataset.test_images)
    quality = embedding_quality(pool, dataset.pool_labels, test, dataset.test_labels)
    quality.update(seconds=round(seconds, 1), epochs=int(cfg.features.epochs),
                   images=len(pool),
                   views_per_second=round(2 * len(pool) * int(cfg.features.epochs) / seconds))
    (out / "embedding.json").write_text(json.dumps(quality, indent=2))
    print(f"simclr: {json.dumps(quality)}", flush=True)


def embedding_quality(pool, pool_labels, test, test_labels) -> dict[str, float]:
    """Test accuracy of kNN (k = 20, cosine) and of a linear probe, with every pool label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine").fit(pool, pool_labels)
    probe = LogisticRegression(max_iter=300).fit(pool, pool_labels)
    return {"knn20_cosine": float((knn.predict(test) == test_labels).mean()),
            "linear_probe": float((probe.predict(test) == test_labels).mean())}


def run_sweep(overrides: list[str], work: Path, seconds: float) -> str:
    """``nfpf-run experiment=cifar10_deep`` for at most ``seconds``; interrupted (SIGINT to
    its process group, then SIGKILL) when the time is up."""
    cmd = [sys.executable, "-m", "nfpf.cli.run", f"experiment={EXPERIMENT}", "logger=none",
           f"paths.output_dir={work}", *overrides]
    print(f"sweep: {' '.join(cmd[2:])} (for at most {seconds:.0f} s)", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        return f"exit {proc.wait(timeout=max(1.0, seconds))}"
    except subprocess.TimeoutExpired:
        interrupt_group(proc)
        return "interrupted at the budget"


def interrupt_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """Ctrl-C to ``proc``'s process group (the sweep records what is finished and stops its
    workers); SIGKILL if it is still running ``grace`` seconds later."""
    for stop in (signal.SIGINT, signal.SIGKILL):
        os.killpg(proc.pid, stop)
        try:
            proc.wait(timeout=grace if stop == signal.SIGINT else None)
            return
        except subprocess.TimeoutExpired:
            continue


def pack_runs(work: Path, out: Path, overrides: list[str]) -> dict[str, int]:
    """Every finished run's files into ``runs.tar.gz``; the counts into ``progress.json``."""
    sweep = work / "multirun" / EXPERIMENT
    done = sorted(p.parent for p in sweep.rglob("result.json")) if sweep.is_dir() else []
    failed = sorted(p.parent for p in sweep.rglob("failed.json")) if sweep.is_dir() else []
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for run in sorted(set(done) | set(failed)):
            for name in RUN_FILES:
                if (run / name).is_file():
                    tar.add(run / name, arcname=str((run / name).relative_to(work)))
    size = sweep_size(overrides)
    progress = {"complete": len(done), "failed": len(failed), "sweep_size": size}
    (out / "progress.json").write_text(json.dumps(progress, indent=2))
    return progress


def sweep_size(overrides: list[str]) -> int:
    """Runs in the sweep: the product of its parameter lists' lengths (with overrides)."""
    size = 1
    for values in compose(overrides, hydra=True).hydra.sweeper.params.values():
        size *= len(str(values).split(","))
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "deep_out")))
    parser.add_argument("--state", type=Path, default=ROOT / ".device" / "state",
                        help="what earlier calls left (simclr/, runs.tar.gz)")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds for this call; the sweep stops in time to pack")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "nfpf-cifar10-deep",
                        help="where this call's sweep runs (its caches are not kept)")
    parser.add_argument("overrides", nargs="*", help="extra nfpf-run overrides (after --)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    args.state.mkdir(parents=True, exist_ok=True)
    weights = args.state / "simclr"
    from nfpf.deep.simclr import weight_files

    if not weight_files(weights):
        train_simclr(list(args.overrides), args.out / "simclr", args.out)
        shutil.copytree(args.out / "simclr", weights, dirs_exist_ok=True)
    work = args.work
    if (args.state / "runs.tar.gz").is_file():
        with tarfile.open(args.state / "runs.tar.gz") as tar:
            tar.extractall(work, filter="data")
    # last, so that no extra override trains the saved network again
    overrides = [*args.overrides, "features.epochs=0",
                 f"features.weights={weights.relative_to(ROOT)}"
                 if weights.is_relative_to(ROOT) else f"features.weights={weights}"]
    left = args.budget - (time.perf_counter() - start) - 45  # time to pack and report
    status = run_sweep(overrides, work, left) if left > 30 else "no time left for runs"
    progress = pack_runs(work, args.out, list(args.overrides))
    print(f"sweep: {status}; {json.dumps(progress)}", flush=True)
    if progress["complete"] + progress["failed"] >= progress["sweep_size"]:
        subprocess.run([sys.executable, "-m", "nfpf.cli.report",
                        str(work / "multirun" / EXPERIMENT)], cwd=ROOT)
        for name in ("report.md", "summary.csv"):
            found = sorted((work / "multirun" / EXPERIMENT).rglob(name))
            if found:
                shutil.copy(found[0], args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
