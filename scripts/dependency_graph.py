"""The package's layers, which may import which, and the picture of the graph from the code.

``python scripts/dependency_graph.py`` reads every module of the installed package (``nfpf/``,
``baselines/`` as ``nfpf.baselines``, ``experiments/cli/`` as ``nfpf.cli``, and the Hydra
plugins of ``hydra_plugins/``, part of the cli layer), finds its imports of nfpf and of those
plugins (module-level and inside functions), and writes

- ``docs/architecture.png``: the layers and the imports between them (arrow = "imports");
- the Mermaid graph between the markers of ``docs/architecture.md``.

``--check`` writes nothing and exits 1 when the code breaks a rule of :data:`MAY_IMPORT` or
the files are stale. ``tests/test_architecture.py`` runs the same checks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Checkout folder -> installed package name (pyproject.toml's package-dir).
SOURCES = {"nfpf": "nfpf", "baselines": "nfpf.baselines", "experiments/cli": "nfpf.cli",
           "hydra_plugins": "hydra_plugins"}

#: Layer of a module: the first entry whose prefix the module's name starts with.
LAYERS = {
    "nfpf.io": "io",
    "nfpf.core": "core",
    "nfpf.method": "method",
    "nfpf.baselines": "baselines",
    "nfpf.active": "active",
    "nfpf.data": "data",
    "nfpf.features": "features",
    "nfpf.deep": "deep",
    "nfpf.evaluation": "evaluation",
    "nfpf.report": "report",
    "nfpf.app": "app",
    "nfpf.cli": "cli",
    "nfpf": "api",  # nfpf/__init__.py: the top-level functions users import
    # the Hydra launcher and sweeper that nfpf-run selects by config and registers: the
    # command line's machinery, in the folder Hydra requires of plugins
    "hydra_plugins": "cli",
}
#: What each layer may import besides itself; everything else is a broken rule.
MAY_IMPORT: dict[str, set[str]] = {
    "io": set(),
    "core": {"io"},
    "method": {"core", "io"},
    "baselines": {"core", "io"},
    "active": {"core", "io", "baselines"},
    "data": {"core", "io"},
    "features": {"core", "io"},
    "deep": {"core", "io", "features"},
    "evaluation": {"core", "io", "data", "features", "deep", "active"},
    "report": {"core", "io", "evaluation"},
    "app": {"core", "io", "data", "features"},
    "cli": {"core", "io", "data", "evaluation", "report", "app", "active", "features"},
    "api": {"core", "active"},
}
#: Drawing order of the layers, bottom (imported by many) to top (entry points).
ORDER = ["io", "core", "data", "features", "method", "baselines", "deep", "active",
         "evaluation", "report", "app", "api", "cli"]

DOC = ROOT / "docs" / "architecture.md"
PICTURE = ROOT / "docs" / "architecture.png"
BEGIN, END = "<!-- begin generated graph -->", "<!-- end generated graph -->"


def layer_of(module: str) -> str | None:
    """The layer of an nfpf module name, or None for a name outside the package."""
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def modules() -> dict[str, Path]:
    """Installed module name -> its file in the checkout."""
    found = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The nfpf modules ``name`` imports (resolved: ``from nfpf.core import kernels`` is
    ``nfpf.core.kernels``; a relative import is made absolute)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules_cache()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if is_ours(alias.name, known)}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if not is_ours(base, known):
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return found - {name}


def is_ours(module: str, known: dict[str, Path]) -> bool:
    """Whether ``module`` is nfpf's: under ``nfpf``, or one of our Hydra plugins (the
    ``hydra_plugins`` namespace also holds other projects' plugins)."""
    return module.split(".")[0] == "nfpf" or any(
        module == name or module.startswith(name + ".") or name.startswith(module + ".")
        for name in known if name.startswith("hydra_plugins."))


_MODULES: dict[str, Path] | None = None


def modules_cache() -> dict[str, Path]:
    global _MODULES
    if _MODULES is None:
        _MODULES = modules()
    return _MODULES


def module_edges() -> dict[str, set[str]]:
    """Module -> the nfpf modules it imports."""
    return {name: imports(name, path) for name, path in modules_cache().items()}


def layer_edges() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(importing layer, imported layer) -> the module pairs behind that edge."""
    edges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for source, targets in module_edges().items():
        for target in targets:
            a, b = layer_of(source), layer_of(target)
            if a and b and a != b:
                edges[a, b].append((source, target))
    return dict(edges)


def broken_rules() -> list[str]:
    """One line per import that a layer may not make."""
    return [f"{source} ({a}) imports {target} ({b}); {a} may import only "
            f"{', '.join(sorted(MAY_IMPORT[a])) or 'nothing of nfpf'}"
            for (a, b), pairs in sorted(layer_edges().items()) if b not in MAY_IMPORT[a]
            for source, target in sorted(pairs)]


def private_imports() -> list[str]:
    """One line per import of a private name (``_x``) of another module."""
    lines = []
    for name, path in modules_cache().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nfpf"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(p.startswith("_") for p in node.module.split(".")):
                    lines.append(f"{name} imports {private or ''} from {node.module}")
    return lines


def mermaid() -> str:
    """The layer graph as a Mermaid flowchart (GitHub renders it)."""
    lines = ["```mermaid", "flowchart BT"]
    lines += [f"    {layer}[{layer}]" for layer in ORDER]
    lines += [f"    {a} --> {b}" for a, b in sorted(layer_edges())]
    lines.append("```")
    return "\n".join(lines)


def draw(path: Path) -> None:
    """The layer graph as a PNG: layers stacked bottom-up in :data:`ORDER`, one arrow per
    importing pair of layers, labelled with the number of module imports behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(ORDER)
    for (a, b), pairs in layer_edges().items():
        graph.add_edge(a, b, weight=len(pairs))
    position = {"io": (0, 0), "core": (0, 1), "data": (-3, 2), "features": (-1, 2),
                "method": (1, 2), "baselines": (3, 2), "deep": (-2, 3), "active": (2, 3),
                "evaluation": (-1, 4), "app": (1.5, 4), "report": (-2.5, 5), "api": (2.5, 5),
                "cli": (0, 6)}
    figure, axes = plt.subplots(figsize=(9, 8), dpi=100)
    nx.draw_networkx_nodes(graph, position, node_size=2600, node_color="#dbe9f6", ax=axes)
    nx.draw_networkx_labels(graph, position, font_size=10, ax=axes)
    nx.draw_networkx_edges(graph, position, node_size=2600, arrowsize=14, width=1.0,
                           edge_color="#555555", connectionstyle="arc3,rad=0.12", ax=axes)
    axes.set_title("nfpf layers: an arrow points from a layer to one it imports")
    axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def document_with_graph(text: str) -> str:
    """``docs/architecture.md``'s text with the generated graph between the markers."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{mermaid()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 on a broken rule or a stale document")
    args = parser.parse_args(argv)
    problems = broken_rules() + private_imports()
    text = DOC.read_text(encoding="utf-8")
    if args.check:
        if document_with_graph(text) != text:
            problems.append(f"{DOC.relative_to(ROOT)} is stale: run "
                            f"python scripts/dependency_graph.py")
    else:
        DOC.write_text(document_with_graph(text), encoding="utf-8")
        draw(PICTURE)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
