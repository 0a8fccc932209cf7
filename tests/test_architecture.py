"""The layers of docs/architecture.md hold in the code, and its generated graph is current."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import tomllib

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "dependency_graph", PROJECT_ROOT / "scripts" / "dependency_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def graph():
    return _load_script()


def test_no_layer_imports_a_layer_it_may_not(graph) -> None:
    assert graph.broken_rules() == []


def test_no_module_imports_a_private_name_of_another(graph) -> None:
    assert graph.private_imports() == []


def test_every_module_has_a_layer(graph) -> None:
    assert [name for name in graph.modules() if graph.layer_of(name) is None] == []
    assert set(graph.MAY_IMPORT) == set(graph.ORDER) == set(graph.LAYERS.values())


def test_architecture_page_holds_the_current_graph(graph) -> None:
    text = graph.DOC.read_text(encoding="utf-8")
    assert graph.document_with_graph(text) == text, "run python scripts/dependency_graph.py"
    assert graph.PICTURE.is_file()


def test_the_checker_sees_module_level_lazy_and_relative_imports(graph, tmp_path) -> None:
    """A hand-made module in the core layer that imports upwards three ways."""
    module = tmp_path / "fake.py"
    module.write_text(
        "from nfpf.core import kernels\n"
        "import numpy as np\n"
        "from . import selection\n"
        "def later():\n"
        "    from nfpf.evaluation.pipeline import run\n"
        "    import nfpf.report.tables\n"
        "from nfpf.core.selection import _private\n")
    graph.modules_cache()["nfpf.core.fake"] = module
    assert graph.imports("nfpf.core.fake", module) == {
        "nfpf.core.kernels", "nfpf.core.selection", "nfpf.evaluation.pipeline",
        "nfpf.report.tables"}
    broken = graph.broken_rules()
    assert any(line.startswith("nfpf.core.fake (core) imports nfpf.evaluation.pipeline")
               for line in broken)
    assert any(line.startswith("nfpf.core.fake (core) imports nfpf.report.tables")
               for line in broken)
    assert "nfpf.core.fake imports ['_private'] from nfpf.core.selection" in (
        graph.private_imports())


def test_every_package_folder_is_shipped_in_the_wheel() -> None:
    """pyproject lists the packages explicitly (three come from other folders); a new folder
    of nfpf/ missing from the list would silently be left out of the wheel."""
    packages = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
                   ["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(PROJECT_ROOT).parts)
               for p in (PROJECT_ROOT / "nfpf").rglob("__init__.py")}
    assert folders <= packages
    assert {"nfpf.baselines", "nfpf.cli", "nfpf.conf"} <= packages


def _sources(graph) -> dict[str, str]:
    return {name: path.read_text(encoding="utf-8") for name, path in graph.modules().items()}


def _imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_one_home_for_file_io_and_trainers(graph) -> None:
    """Hashing and atomic renames live in nfpf.io, Lightning Trainers are built only by
    nfpf.core.trainer, the RD score only in nfpf.method.rd."""
    sources = _sources(graph)
    assert [n for n, s in sources.items() if "hashlib" in _imported_roots(s)] == ["nfpf.io"]
    assert [n for n, s in sources.items() if "os.replace(" in s] == ["nfpf.app.writers",
                                                                     "nfpf.io"]
    assert [n for n, s in sources.items()
            if re.search(r"\bTrainer\(", s)] == ["nfpf.core.trainer"]
    assert [n for n, s in sources.items() if "def rd_scores" in s] == ["nfpf.method.rd"]


def test_nfpf_plus_overrides_only_its_own_steps() -> None:
    """NFPF+ inherits NFPF's round loop: it replaces the space the SFLMs see (``_select``,
    ``_seed_space``), the work before the rounds and each round's pick, and adds its own
    parameters and their checks (``__init__``, ``check_params``, what None means for
    ``ref_normalisation``), nothing else."""
    from nfpf.method import NFPF, NFPFPlus

    overridden = {name for name, value in vars(NFPFPlus).items()
                  if callable(value) and hasattr(NFPF, name)}
    assert overridden == {"__init__", "check_params", "_ref_normalisation", "_select",
                          "_seed_space", "_before_rounds", "_pick"}
    assert NFPFPlus._progressive is NFPF._progressive
    assert NFPFPlus._round is NFPF._round


def test_code_comments_cite_no_work_items_or_files_outside_the_repo(graph) -> None:
    cited = [name for name, source in _sources(graph).items()
             if re.search(r"\bissue \d|\bmethods\.md\b", source)]
    assert cited == []


def _sflm_private_names() -> set[str]:
    """Private methods, properties and attributes of the SFLM class (``_x``, not dunders)."""
    tree = ast.parse((PROJECT_ROOT / "nfpf" / "method" / "sflm.py").read_text(encoding="utf-8"))
    sflm = next(node for node in tree.body
                if isinstance(node, ast.ClassDef) and node.name == "SFLM")
    names = {node.name for node in sflm.body if isinstance(node, ast.FunctionDef)}
    for node in ast.walk(sflm):
        targets = [node.target] if isinstance(node, ast.AnnAssign) else (
            node.targets if isinstance(node, ast.Assign) else [])
        names |= {t.attr for t in targets if isinstance(t, ast.Attribute)
                  and isinstance(t.value, ast.Name) and t.value.id == "self"}
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _reads_of(names: set[str], source: str) -> list[str]:
    """``obj._x`` and ``getattr(obj, "_x")`` in ``source`` for ``_x`` in ``names`` (on any
    object but ``self``, whose private names are its own class's)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in names and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in names):
            found.append(f"line {node.lineno}: {node.func.id} {node.args[1].value}")
    return sorted(found)


def test_no_private_attribute_of_the_sflm_is_read_outside_its_module() -> None:
    """The SFLM is driven through its public interface (fit, partial_fit/end_pass,
    export_state/load_state, ...) everywhere else: the NFPF selectors, the Lightning module,
    the benchmarks, the tests."""
    names = _sflm_private_names()
    assert {"_fit", "_solve", "_device", "_torch_dtype"} <= names  # the scan sees them
    folders = ["nfpf", "baselines", "experiments", "tests", "scripts", "hydra_plugins"]
    sflm = PROJECT_ROOT / "nfpf" / "method" / "sflm.py"
    offenders = {str(path.relative_to(PROJECT_ROOT)): reads
                 for folder in folders for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
                 if path != sflm and (reads := _reads_of(names, path.read_text("utf-8")))}
    assert offenders == {}
    # the scan finds such reads
    assert _reads_of(names, "m = SFLM(3)\nm._fit.stats\ngetattr(m, '_torch_dtype')\n") == [
        "line 2: ._fit", "line 3: getattr _torch_dtype"]
