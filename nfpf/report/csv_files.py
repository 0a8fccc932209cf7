"""The CSV renderer: one ``<name>.csv`` per frame of a :class:`~nfpf.report.content.ReportContent`
(summary, ranks, auc, runs, and with a reference wilcoxon, wtl, ``wilcoxon_al_<ref>``,
``wtl_al_<ref>``). Numbers stay fractions (0.875)."""

from __future__ import annotations

from pathlib import Path

from nfpf.report.content import ReportContent

__all__ = ["write_csv"]


def write_csv(content: ReportContent, out: Path) -> dict[str, Path]:
    """Write every frame of ``content`` into ``out``; returns {name: path} in writing order."""
    paths = {}
    for name, frame in content.frames.items():
        paths[name] = out / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths
