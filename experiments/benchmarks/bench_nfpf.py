"""Speed and memory benchmark of NFPF (a script, not a test).

Runs one full NFPF selection (B = 1000, seeds by K-means on PCA-50 of the pixels, every other
setting at its default) on MNIST (60,000 x 784) or on the CIFAR-10 JPEG training images
(50,000 x 3072), and reports the wall time of each phase, the peak resident memory, and the
reference SFLM fit's achieved GFLOP/s next to a plain large float32 matrix product's GFLOP/s
measured in the same process just before and just after the selection.

Usage::

    NFPF_DATA_ROOT=../shared/data python -m experiments.benchmarks.bench_nfpf mnist
    python -m experiments.benchmarks.bench_nfpf cifar10_jpg --data-root ../shared/data
    python -m experiments.benchmarks.bench_nfpf mnist --device cuda --fit-repeats 0     # on a GPU

Run one dataset per process (the peak memory is the process's), as a module from the project
root.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from nfpf.core.selection import Pool
from nfpf.method.progressive import NFPF
from nfpf.method.sflm import SFLM, draw_weights


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_gflops(size: int = 4096, repeats: int = 3) -> float:
    """Best-of-``repeats`` GFLOP/s of a float32 (size x size) @ (size x size) product."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def load_mnist(root: Path) -> np.ndarray:
    """MNIST training images from the IDX file (torchvision layout), without importing
    torchvision (whose import alone adds ~160 MB of resident memory)."""
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    packed = path.with_name(path.name + ".gz")  # what travels to a GPU machine
    if path.is_file():
        raw = np.fromfile(path, dtype=np.uint8)
    elif packed.is_file():
        import gzip

        raw = np.frombuffer(gzip.decompress(packed.read_bytes()), dtype=np.uint8)
    else:
        raise SystemExit(f"{path} not found (torchvision's MNIST layout under the data root)")
    magic, n, h, w = np.frombuffer(raw[:16].tobytes(), dtype=">i4")
    if magic != 2051:
        raise SystemExit(f"{path} is not an IDX image file (magic {magic})")
    images = np.empty((n, h, w), dtype=np.float32)
    np.multiply(raw[16:].reshape(n, h, w), np.float32(1 / 255), out=images)
    return images  # (60000, 28, 28) in [0, 1]


def load_cifar10_jpg(root: Path) -> np.ndarray:
    from PIL import Image

    archives = sorted((root / "cifar10_jpg").glob("train_*.tar.gz"))
    if not archives:
        raise SystemExit(f"no cifar10_jpg/train_*.tar.gz under {root}")
    per_archive = []
    for path in archives:
        with tarfile.open(path) as tar:
            per_archive.append(sorted(m.name for m in tar.getmembers()
                                      if m.isfile() and m.name.lower().endswith(".jpg")))
    images = np.empty((sum(map(len, per_archive)), 3, 32, 32), dtype=np.float32)
    i = 0
    for path, names in zip(archives, per_archive, strict=True):
        with tarfile.open(path) as tar:
            for name in names:
                with Image.open(io.BytesIO(tar.extractfile(name).read())) as im:
                    rgb = np.asarray(im.convert("RGB"))
                np.multiply(rgb.transpose(2, 0, 1), np.float32(1 / 255), out=images[i])
                i += 1
    return images  # (50000, 3, 32, 32) in [0, 1]


class RssSampler:
    """Samples the resident set size every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), current_rss_mb()))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, t0: float, t1: float) -> float:
        inside = [rss for t, rss in self.samples if t0 <= t <= t1]
        return max(inside) if inside else float("nan")


def reference_flops(n: int, d: int, L: int) -> dict[str, float]:
    """Floating-point operations of the reference SFLM's fit and error passes."""
    fit_actual = 2 * n * d * L + n * L * (L + 1) + 2 * n * L * d  # XWᵀ, syrk HᵀH, HᵀX
    fit_gemm_equiv = 2 * n * d * L + 2 * n * L * L + 2 * n * L * d  # HᵀH as a full GEMM
    errors = 2 * n * d * L + 2 * n * L * d  # XWᵀ, Hβ
    return {"fit_actual": fit_actual, "fit_gemm_equiv": fit_gemm_equiv, "errors": errors}


def alternated(flops: dict[str, float], fit_best: float, draw_best: float, pass_best: float,
               mm_best: float) -> dict[str, float]:
    """The alternated reference-fit / matmul measurements (CPU only)."""
    return {
        "alternated_ref_fit_s": round(fit_best, 2),
        "alternated_ref_fit_gflops_actual": round(flops["fit_actual"] / fit_best / 1e9, 1),
        "alternated_matmul_gflops": round(mm_best, 1),
        "alternated_ref_fit_pct_of_matmul": round(
            100 * flops["fit_actual"] / fit_best / 1e9 / mm_best, 1),
        "alternated_weight_draw_s": round(draw_best, 2),
        "alternated_ref_pass_s": round(pass_best, 2),
        "alternated_ref_pass_pct_of_matmul": round(
            100 * flops["fit_actual"] / pass_best / 1e9 / mm_best, 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=["mnist", "cifar10_jpg"])
    parser.add_argument("--data-root", default=os.environ.get("NFPF_DATA_ROOT"),
                        help="data root (default: $NFPF_DATA_ROOT)")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-repeats", type=int, default=3,
                        help="alternated reference-fit / matmul repeats after the selection")
    parser.add_argument("--orthonormalisation", choices=["svd", "qr"], default="svd",
                        help="weight orthonormalisation of the SFLMs (svd: released code)")
    parser.add_argument("--device", default="cpu",
                        help="NFPF's device option: cpu (reference path), cuda, auto")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="select from the first this many images only (a quick check)")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="side of the float32 matrix product timed for comparison")
    args = parser.parse_args(argv)
    if not args.data_root:
        parser.error("give --data-root or set NFPF_DATA_ROOT")
    return args


def phase_peaks(sampler: RssSampler, t0: float, timings: dict[str, float], overlapped: bool,
                rss_start: float) -> dict[str, float]:
    """Peak resident memory above ``rss_start`` (MB) in each phase of a selection started at
    ``t0``, from the selector's own timings: the phases run in this order, except that the
    reference SFLM runs beside the K-means seeding when they overlap."""
    reference_s = timings.get("reference_fit", 0.0) + timings.get("reference_errors", 0.0)
    windows = [("pixels", timings.get("pixels", 0.0))]
    if overlapped:
        windows.append(("seeding_beside_reference",
                        max(timings.get("seeding", 0.0), reference_s)))
    else:
        windows += [(phase, timings.get(phase, 0.0))
                    for phase in ("seeding", "reference_fit", "reference_errors")]
    windows.append(("progressive", timings.get("progressive", 0.0)))
    peaks, start = {}, t0
    for phase, seconds in windows:
        peaks[phase] = round(sampler.peak_between(start, start + seconds) - rss_start, 1)
        start += seconds
    if overlapped:  # the reference starts with the seeding: its two passes within that window
        begin = t0 + timings.get("pixels", 0.0)
        fit_end = begin + timings.get("reference_fit", 0.0)
        peaks["reference_fit"] = round(sampler.peak_between(begin, fit_end) - rss_start, 1)
        peaks["reference_errors"] = round(
            sampler.peak_between(fit_end, begin + reference_s) - rss_start, 1)
    return peaks


def alternated_fits(X: np.ndarray, hidden: int, args: argparse.Namespace,
                    flops: dict[str, float]) -> dict[str, float]:
    """Reference fits alternated with matrix products, the best of ``args.fit_repeats`` each
    (the host is shared). A fit = drawing the orthonormal weights (one single-threaded SVD
    as the released code, or QR with ``--orthonormalisation qr``) + the pass over the data;
    both are timed."""
    if args.fit_repeats <= 0:
        return {}
    fit_best = draw_best = pass_best = float("inf")
    mm_best = 0.0
    for _ in range(args.fit_repeats):
        mm_best = max(mm_best, matmul_gflops(args.matmul_size, repeats=2))
        t1 = time.perf_counter()
        weights, bias = draw_weights(hidden, X.shape[1], np.random.default_rng(0),
                                     args.orthonormalisation)
        t2 = time.perf_counter()
        SFLM(hidden, input_weights=weights, bias=bias, check_finite=False).fit(X)
        t3 = time.perf_counter()
        fit_best = min(fit_best, t3 - t1)
        draw_best, pass_best = min(draw_best, t2 - t1), min(pass_best, t3 - t2)
    return alternated(flops, fit_best, draw_best, pass_best, mm_best)


def timed_selection(pool: Pool, args: argparse.Namespace) -> tuple[NFPF, dict]:
    """One NFPF selection with its wall time and memory (MB) around it."""
    selector = NFPF(seed_features="pca", seed_pca_components=50, progress=False,
                    orthonormalisation=args.orthonormalisation, device=args.device)
    if args.device != "cpu":  # a first selection warms the GPU up (CUDA context, kernels)
        head = slice(0, 2000)
        NFPF(progress=False, device=args.device).select(
            Pool(features=pool.features[head], images=pool.images[head], n_classes=10), 20)
    rss_start = current_rss_mb()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        idx = selector.select(pool, args.budget, seed=args.seed)
        t_select = time.perf_counter() - t0
    overlapped = bool(selector.info_.get("reference_overlapped_seeding"))
    measured = {
        "selected": int(idx.size),
        "rounds": selector.info_["rounds"],
        "selection_s": round(t_select, 2),
        "phases_s": selector.info_["timings"],
        "rss_selection_start_mb": round(rss_start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "phase_peak_rss_above_start_mb": phase_peaks(
            sampler, t0, selector.info_["timings"], overlapped, rss_start),
        "reference_overlapped_seeding": overlapped,
    }
    return selector, measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.data_root)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    t0 = time.perf_counter()
    images = load_mnist(root) if args.dataset == "mnist" else load_cifar10_jpg(root)
    images = images[:args.max_samples]
    t_load = time.perf_counter() - t0
    n = len(images)
    pool = Pool(features=images.reshape(n, -1), images=images, n_classes=10)
    rss_data = current_rss_mb()

    rate_before = matmul_gflops(args.matmul_size)
    selector, measured = timed_selection(pool, args)
    rate_after = matmul_gflops(args.matmul_size)
    d = pool.features.shape[1]
    flops = reference_flops(n, d, selector.ref_hidden)
    fit_s, err_s = measured["phases_s"]["reference_fit"], measured["phases_s"]["reference_errors"]
    result = {
        "dataset": args.dataset,
        "n": n,
        "d": d,
        "budget": args.budget,
        "threads": torch.get_num_threads(),
        "load_s": round(t_load, 2),
        "rss_after_load_mb": round(rss_data, 1),
        **measured,
        "matmul_gflops_before": round(rate_before, 1),
        "matmul_gflops_after": round(rate_after, 1),
        "ref_fit_gflops_actual": round(flops["fit_actual"] / fit_s / 1e9, 1),
        "ref_fit_gflops_gemm_equiv": round(flops["fit_gemm_equiv"] / fit_s / 1e9, 1),
        "ref_errors_gflops": round(flops["errors"] / err_s / 1e9, 1),
        "ref_fit_pct_of_matmul": round(
            100 * flops["fit_actual"] / fit_s / 1e9 / max(rate_before, rate_after), 1),
        "alternated_best_of": args.fit_repeats,
        **alternated_fits(pool.pixels(), selector.ref_hidden, args, flops),
        "orthonormalisation": args.orthonormalisation,
        "torch": torch.__version__,
        "device": selector.info_.get("device", "cpu"),
        "command": "python -m experiments.benchmarks.bench_nfpf "
                   + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
