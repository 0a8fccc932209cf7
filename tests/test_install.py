"""What is pinned and what floats (README, "Pinned and floating versions"), and CI's install.

``constraints.txt`` pins every package the suite passed with; pyproject's upper bound of each
dependency is that version; the golden picks were recorded under those versions; CI installs
into a virtual environment of its own with the README's install command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from golden_picks import (
    FIXTURE,
    PACKAGES,
    PINNED_KERNELS,
    added_to,
    environment,
    environment_note,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")


def pinned() -> dict[str, str]:
    """``constraints.txt`` as {canonical name: version}."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def declared() -> list[Requirement]:
    """Every dependency pyproject.toml declares, extras included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def test_every_dependency_is_pinned_and_bounded_by_its_pin():
    pins = pinned()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not pinned in constraints.txt"
        version = pins[name]
        assert requirement.specifier.contains(version), \
            f"{requirement.name}=={version} (constraints.txt) is outside {requirement.specifier}"
        upper = [s for s in requirement.specifier if s.operator == "<="]
        assert [s.version for s in upper] == [version], \
            f"{requirement.name}: the upper bound must be <={version}, the pinned version"


def test_golden_picks_were_recorded_under_the_pinned_versions():
    recorded = json.loads(FIXTURE.read_text())["recorded_under"]
    pins = pinned()
    for package in PACKAGES:
        assert recorded["versions"][package] == pins[canonicalize_name(package)], package
    assert recorded["processor"] and recorded["kernels"] == PINNED_KERNELS


def test_environment_note_names_what_changed():
    recorded = {"versions": {"scikit-learn": "1.6.1", "numpy": "2.4.6"}, "processor": "A"}
    now = {"versions": {"scikit-learn": "1.9.1", "numpy": "2.4.6"}, "processor": "A"}
    note = environment_note(recorded, now)
    assert "scikit-learn 1.6.1 -> 1.9.1" in note and "numpy" not in note
    assert "constraints.txt" in note
    assert "code changed" in environment_note(recorded, recorded)
    assert "processor 'A' -> 'B'" in environment_note(recorded, {**recorded, "processor": "B"})


def readme_install_command() -> str:
    """The install line of the README's "Three commands" block."""
    block = (ROOT / "README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    (line,) = [ln for ln in block.splitlines() if ln.lstrip().startswith("pip install")]
    return line.split("#", 1)[0].strip()


def test_adding_picks_is_refused_under_another_environment():
    here = {"recorded_under": {**environment(), "date": "2026-01-01"}, "picks": {"a": [1]}}
    assert added_to(here) is here
    elsewhere = json.loads(json.dumps(here))
    elsewhere["recorded_under"]["versions"]["numpy"] = "0.0.1"
    with pytest.raises(SystemExit, match="recorded under"):
        added_to(elsewhere)


def test_ci_installs_the_readme_way_into_a_fresh_environment():
    script = (ROOT / ".ci" / "run").read_text()
    command = readme_install_command()
    assert "-c constraints.txt" in command
    lines = [ln.strip() for ln in script.splitlines()]
    assert command in lines, f"{command!r} (README) is not what .ci/run installs with"
    venv = next(i for i, ln in enumerate(lines) if re.match(r"python3? -m venv ", ln))
    activate = next(i for i, ln in enumerate(lines) if ln.startswith("source ")
                    and "bin/activate" in ln)
    assert venv < activate < lines.index(command) < lines.index("python -m pytest")
    # the environment lives in a temporary directory outside the checkout, made per run
    assert "mktemp -d" in script and "rm -rf" in script


def test_the_session_caches_in_a_temporary_directory(session_cache_dir, tmp_path):
    """Nothing a test runs caches under ``~/.cache/nfpf``: this process's cache root and that
    of a command it starts are the session's temporary directory."""
    import subprocess
    import sys

    from nfpf.io import cache_root

    home_cache = Path.home() / ".cache" / "nfpf"
    assert cache_root() == session_cache_dir
    assert home_cache not in [cache_root(), *cache_root().parents]
    child = subprocess.run([sys.executable, "-c", "from nfpf.io import cache_root; "
                            "print(cache_root())"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
    assert Path(child.stdout.strip()) == session_cache_dir


def test_golden_picks_run_themselves_under_the_pinned_kernels(tmp_path):
    """Started without the kernel settings (or with others), ``python -m tests.golden_picks``
    computes under ``PINNED_KERNELS`` all the same: numpy and torch read them at import, so
    it runs itself again with them."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key not in PINNED_KERNELS}
    env["MKL_CBWR"] = "COMPATIBLE"
    out = tmp_path / "picks.json"
    proc = subprocess.run([sys.executable, "-m", "tests.golden_picks", "--out", str(out),
                           "--datasets", "digits", "--names", "random"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["recorded_under"]["kernels"] == PINNED_KERNELS
    assert record["picks"] == {key: value for key, value in
                               json.loads(FIXTURE.read_text())["picks"].items()
                               if key.startswith("digits/random/")}
