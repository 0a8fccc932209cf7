"""The whole GPU check in one bounded call: the GPU test suite, then the GPU benchmarks.

Made for the lent GPU machine (15 minutes of device time, at most 10 minutes a command):
every step runs in its own process under its own time limit, the steps stop before the
overall ``--budget`` is spent, and everything is written under ``--out`` as it happens:

- ``device.txt``: the GPU, driver, torch and CUDA versions, the date;
- ``gpu_tests.log`` / ``gpu_tests.xml``: ``pytest tests/test_gpu.py`` (per-test seconds);
- ``nfpf_mnist.json``, ``nfpf_cifar10.json``: NFPF, B = 1000, ``device=cuda``
  (targets: MNIST <= 3 s, CIFAR-10 pixels <= 5 s for the whole selection);
- ``selectors.md`` / ``selectors_large_pool.json``: every selector on a 50,000 x 512 pool
  (target <= 10 s each), the H200 column of ``docs/benchmarks/selectors.md`` (copy both
  back into ``docs/benchmarks/``);
- ``nfpf_agreement.json``: NFPF / NFPF+ picks on CUDA against the CPU on digits, COIL20,
  USPS;
- ``summary.json``: each step's exit code and seconds.

Preparation (on the development machine, from the project root)::

    ../shared/device/prepare cifar10_jpg ual usps
    mkdir -p .device/data/MNIST/raw
    gzip -c ../shared/data/MNIST/raw/train-images-idx3-ubyte \\
        > .device/data/MNIST/raw/train-images-idx3-ubyte.gz

Then one device call, ``carry: [".device"]``, ``timeout_s: 540``::

    source .device/env.sh; python3 -m experiments.device.gpu_check --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def steps(out: Path) -> list[tuple[str, list[str], int, list[str]]]:
    """(name, command, seconds allowed, files it writes into the checkout to copy to
    ``out``), most important first."""
    py = sys.executable
    return [
        ("gpu_tests", [py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--durations=0",
                       f"--junitxml={out / 'gpu_tests.xml'}", "tests/test_gpu.py"], 170, []),
        ("nfpf_mnist", [py, "-m", "experiments.benchmarks.bench_nfpf", "mnist", "--device", "cuda",
                        "--fit-repeats", "0", "--threads", "16",
                        "--json", str(out / "nfpf_mnist.json")], 40, []),
        ("nfpf_cifar10", [py, "-m", "experiments.benchmarks.bench_nfpf", "cifar10_jpg", "--device",
                          "cuda", "--fit-repeats", "0", "--threads", "16",
                          "--json", str(out / "nfpf_cifar10.json")], 80, []),
        ("selectors", [py, "-m", "experiments.benchmarks.bench_selectors", "--pool", "large",
                       "--device", "cuda", "--timeout", "30", "--deadline", "135"], 150,
         ["docs/benchmarks/selectors.md", "docs/benchmarks/selectors_large_pool.json"]),
        ("nfpf_agreement", [py, "-m", "experiments.benchmarks.bench_nfpf_device",
                            "--per-class", "1", "5", "--seeds", "0", "1", "--json",
                            str(out / "nfpf_agreement.json")], 40, []),
    ]


def describe_device(out: Path) -> None:
    import torch

    lines = [f"date {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
             f"available {torch.cuda.is_available()}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                     f"{torch.cuda.device_count()} visible")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True)
        lines.append(f"nvidia-smi {smi.stdout.strip() or smi.stderr.strip()}")
    lines.append(f"cpus {os.cpu_count()}")
    (out / "device.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check")))
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all steps together; a step that would not fit is "
                             "skipped and said so")
    parser.add_argument("--only", nargs="+", help="step names to run (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    describe_device(args.out)
    start = time.perf_counter()
    summary = []
    for name, command, limit, written in steps(args.out):
        if args.only and name not in args.only:
            continue
        left = args.budget - (time.perf_counter() - start)
        if left < min(limit, 30):
            summary.append({"step": name, "skipped": f"{left:.0f} s of the budget left"})
            print(f"== {name}: skipped, {left:.0f} s left", flush=True)
            continue
        print(f"== {name}: {' '.join(command[1:])} (limit {min(limit, left):.0f} s)",
              flush=True)
        t0 = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log:
            try:
                code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=min(limit, left)).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        seconds = round(time.perf_counter() - t0, 1)
        for path in written:
            if (ROOT / path).is_file():
                shutil.copy(ROOT / path, args.out / Path(path).name)
        summary.append({"step": name, "exit": code, "seconds": seconds})
        print(f"   {name}: exit {code} in {seconds} s", flush=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    failed = [s["step"] for s in summary if "skipped" in s or s["exit"] != 0]
    print(f"done in {time.perf_counter() - start:.0f} s; failed or skipped: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
