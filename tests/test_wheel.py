"""The package installs as a wheel and works outside the checkout.

The wheel is built from the checkout, installed (without dependencies, which this environment
already has) into a fresh target folder, and used from an empty directory: ``nfpf-run``,
``nfpf.select`` and ``nfpf-select`` must find their configs in the installed package and import
nothing from the checkout.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(PROJECT_ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)], check=True)
    (path,) = out.glob("nfpf-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, str]:
    """Environment running the installed wheel: its target first on the path, from an empty
    working directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "NFPF_TARGET": str(target)}
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_wheel_holds_only_the_nfpf_package_and_its_configs(wheel) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    # hydra_plugins is the namespace Hydra looks for launcher and sweeper plugins in (it
    # refuses any other); ours are the launcher and the sweeper packages
    assert top == {"nfpf", "hydra_plugins"}
    assert {"/".join(n.split("/")[:2]) for n in names if n.startswith("hydra_plugins/")} == {
        "hydra_plugins/nfpf_launchers", "hydra_plugins/nfpf_sweepers"}
    assert not any(n == "hydra_plugins/__init__.py" for n in names)  # a namespace, not ours
    configs = {n.removeprefix("nfpf/conf/") for n in names
               if n.startswith("nfpf/conf/") and n.endswith(".yaml")}
    in_checkout = {str(p.relative_to(PROJECT_ROOT / "conf"))
                   for p in (PROJECT_ROOT / "conf").rglob("*.yaml")}
    assert configs == in_checkout
    assert not any("benchmarks" in n or "/device/" in n for n in names)
    scripts = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for line in ("nfpf-run = nfpf.cli.run:main", "nfpf-select = nfpf.cli.select:main",
                 "nfpf-report = nfpf.cli.report:main"):
        assert line in scripts


def test_installed_wheel_runs_from_an_empty_directory(installed, tmp_path) -> None:
    target = Path(installed["NFPF_TARGET"])
    work = tmp_path / "empty"
    work.mkdir()
    code = ("import numpy as np, nfpf, nfpf.baselines.coreset, nfpf.cli.run\n"
            "from nfpf.core.api import CONFIG_DIR\n"
            "X = np.random.default_rng(0).normal(size=(200, 8))\n"
            "idx = nfpf.select(X, 10, method='nfpf')\n"
            "print(nfpf.__file__, nfpf.baselines.coreset.__file__, nfpf.cli.run.__file__, "
            "CONFIG_DIR, sep='\\n')\n"
            "print(len(idx), len(set(idx.tolist())), int(idx.min()) >= 0, int(idx.max()) < 200)")
    out = _run([sys.executable, "-c", code], installed, work).stdout.splitlines()
    *files, summary = out
    for path in files:  # nothing comes from the checkout
        assert Path(path).resolve().is_relative_to(target.resolve()), path
    assert summary == "10 10 True True"

    run = _run([str(target / "bin" / "nfpf-run"), "experiment=single", "dataset=digits",
                "selector=nfpf", "budget_per_class=1"], installed, work)
    results = list((work / "outputs").rglob("result.json"))
    assert len(results) == 1, run.stdout[-2000:]
    assert '"status": "complete"' in results[0].read_text()


def test_installed_nfpf_select_picks_images(installed, tmp_path) -> None:
    target = Path(installed["NFPF_TARGET"])
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"img{i:02d}.png")
    work = tmp_path / "empty"
    work.mkdir()
    _run([str(target / "bin" / "nfpf-select"), f"input={images}", "budget=3",
          f"output={tmp_path / 'picks'}", "features=raw", "cache=false", "progress=false"],
         installed, work)
    with open(tmp_path / "picks" / "selection.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    assert len({row["path"] for row in rows}) == 3
    assert all(row["path"] == f"img{int(row['index']):02d}.png" for row in rows)
