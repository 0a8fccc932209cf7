"""Scaling benchmark: wall time and peak RSS of every selector as the pool grows.

Pools (d = 512, float32, written as ``.npy`` memmaps in a temporary directory and opened with
``np.load(mmap_mode="r")``, so every selector reads them from disk):

- ``gmm``: a 10-component Gaussian mixture (seeded means ~ N(0, 4 I), unit noise).
- ``mnist``: the "real-feature" pool: MNIST train images -> PCA-50 (fitted on the 60,000
  images), rows drawn with replacement and jittered (N(0, 0.05 * per-component std)), then
  mapped to 512 dimensions by a random orthonormal 50 -> 512 projection.

Each (selector, n) runs in its own subprocess under a wall-clock limit; the parent reads the
child's peak RSS from ``os.wait4`` (``ru_maxrss``; it counts the memmap pages the child
touched). Results are appended to a JSON-lines file; ``--plot`` draws the log-log figure with a
least-squares exponent per selector.

Example (what docs/benchmarks/scale.md ran)::

    python -m experiments.benchmarks.bench_scale --pool gmm --n 10000 30000 100000 \\
        --selectors random kmeans coreset typiclust probcover usl ted nfpf \\
        --out docs/benchmarks/scale.jsonl
    python -m experiments.benchmarks.bench_scale --plot docs/benchmarks/scale.jsonl \\
        --figure docs/figures/scale.png
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

D = 512
CHUNK = 65536

#: Bounded-mode overrides used on large pools (name -> (threshold n, overrides)).
BOUNDED = {
    "probcover": {"max_candidates": 20000},
    "usl": {"max_candidates": 20000},
    "nfpf": {"kmeans_fit_subset": 100000},
    "kmeans": {"fit_subset": 100000},
    "typiclust": {"typicality_subset": 2000},
}


def build_selector(name: str, overrides: dict) -> object:
    """The selector ``conf/selector/<name>.yaml`` describes, with ``overrides``, quiet."""
    from nfpf.core.api import load_selector_config, make_selector

    quiet = {"progress": False} if "progress" in load_selector_config(name) else {}
    return make_selector(name, **{**overrides, **quiet})


def make_gmm(path: Path, n: int, seed: int = 0, n_components: int = 10) -> None:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(n_components, D)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        comp = rng.integers(n_components, size=m)
        out[start:start + m] = means[comp] + rng.standard_normal((m, D), dtype=np.float32)
    out.flush()
    del out


def _mnist_pca(data_root: Path, p: int = 50) -> np.ndarray:
    raw = data_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    with open(raw, "rb") as f:
        buf = f.read()
    X = np.frombuffer(buf, dtype=np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    X -= X.mean(0)
    _, vecs = np.linalg.eigh(X.T.astype(np.float64) @ X)  # covariance axes, ascending
    return X @ vecs[:, ::-1][:, :p].astype(np.float32)


def make_mnist(path: Path, n: int, data_root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Z = _mnist_pca(data_root)
    scale = 0.05 * Z.std(0)
    proj, _ = np.linalg.qr(rng.standard_normal((D, Z.shape[1])))
    proj = proj.T.astype(np.float32)  # (50, 512), orthonormal rows
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        rows = Z[rng.integers(len(Z), size=m)]
        rows = rows + rng.standard_normal(rows.shape).astype(np.float32) * scale
        out[start:start + m] = rows @ proj
    out.flush()
    del out


def worker(args: argparse.Namespace) -> None:
    """Child process: load the memmap, select, print one JSON line."""
    from nfpf.core.selection import Pool

    X = np.load(args.path, mmap_mode="r")
    overrides = json.loads(args.overrides)
    sel = build_selector(args.selector, overrides)
    t0 = time.perf_counter()
    idx = sel.select(Pool(X, n_classes=10), args.budget, seed=0)
    wall = time.perf_counter() - t0
    info = {k: v for k, v in getattr(sel, "info_", {}).items()
            if k in ("candidate_subset", "kmeans_fit_subset", "fit_subset", "streamed", "timings",
                     "typicality_subsampled_picks")}
    print("RESULT " + json.dumps({"select_s": wall, "n_selected": len(idx), "info": info}))


def run_one(selector: str, path: Path, n: int, budget: int, limit: float, bounded: bool) -> dict:
    overrides = BOUNDED.get(selector, {}) if bounded else {}
    cmd = [sys.executable, "-m", "experiments.benchmarks.bench_scale", "--worker",
           "--selector", selector,
           "--path", str(path), "--budget", str(budget), "--overrides", json.dumps(overrides)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    status, usage, timed_out = None, None, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > limit:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    rec = {"selector": selector, "n": n, "d": D, "budget": budget, "overrides": overrides,
           "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
           "status": "timeout" if timed_out else ("ok" if proc.returncode == 0 else "error")}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            rec.update(json.loads(line[7:]))
    if rec["status"] == "error":
        rec["stderr_tail"] = err[-800:]
    try:
        rec["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        pass
    return rec


def plot(jsonl: Path, figure: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    exponents = {}
    for pool in sorted({r.get("pool", "gmm") for r in recs}):
        for name in sorted({r["selector"] for r in recs}):
            pts = sorted((r["n"], r["select_s"]) for r in recs if r["selector"] == name
                         and r.get("pool", "gmm") == pool and r["status"] == "ok")
            if not pts:
                continue
            n, t = np.array(pts, dtype=float).T
            label = f"{name} ({pool})"
            if len(n) >= 2:
                slope = float(np.polyfit(np.log(n), np.log(np.maximum(t, 1e-3)), 1)[0])
                exponents[label] = round(slope, 2)
                label += f" ~n^{slope:.2f}"
            ax.loglog(n, t, "o-" if pool == "gmm" else "s--", label=label, ms=3)
    ax.set_xlabel("pool size n (d = 512, B = 1000)")
    ax.set_ylabel("selection wall time [s]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure)
    return exponents


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", choices=("gmm", "mnist"), default="gmm")
    ap.add_argument("--n", type=int, nargs="+", default=[10000, 30000, 100000, 300000, 1000000])
    ap.add_argument("--selectors", nargs="+",
                    default=["random", "kmeans", "coreset", "typiclust", "probcover", "usl",
                             "ted", "dual", "alms", "nfpf"])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--exact", action="store_true", help="no bounded-mode overrides")
    ap.add_argument("--data-root", type=Path,
                    default=Path(os.environ.get("NFPF_DATA_ROOT",
                                                Path(__file__).resolve().parents[3] / "shared"
                                                / "data")))
    ap.add_argument("--tmp", type=Path, default=None, help="directory for the memmaps")
    ap.add_argument("--out", type=Path, default=Path("scale.jsonl"))
    ap.add_argument("--plot", type=Path, default=None, help="JSON-lines file to plot")
    ap.add_argument("--figure", type=Path, default=Path("docs/figures/scale.png"))
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--selector", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.worker:
        worker(args)
        return
    if args.plot:
        print(json.dumps(plot(args.plot, args.figure), indent=1))
        return
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.n:
            path = Path(tmp) / f"{args.pool}_{n}.npy"
            t0 = time.perf_counter()
            if args.pool == "gmm":
                make_gmm(path, n)
            else:
                make_mnist(path, n, args.data_root)
            logger.info("pool %s n=%d written in %.1fs", args.pool, n, time.perf_counter() - t0)
            for name in args.selectors:
                rec = run_one(name, path, n, args.budget, args.time_limit, not args.exact)
                rec["pool"] = args.pool
                logger.info("%s", json.dumps({k: v for k, v in rec.items()
                                              if k != "stderr_tail"}))
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            path.unlink()


if __name__ == "__main__":
    main()
