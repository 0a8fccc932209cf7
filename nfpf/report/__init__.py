"""Tables, figures and one HTML page from finished runs (the library behind ``nfpf-report``).

:func:`build_report` reads every ``result.json`` / ``failed.json`` below a directory and
writes, into the output directory:

- ``index.html`` -- one self-contained page with every table and figure;
- ``report.md`` -- the same tables in Markdown (figures linked from ``figures/``);
- ``report.tex`` -- a LaTeX document of booktabs tables, and ``latex/<table>.tex`` fragments;
- ``summary.csv`` (mean, std, n per cell and selector), ``ranks.csv``, ``auc.csv``,
  ``wilcoxon.csv``, ``wtl.csv`` and ``runs.csv`` (every run, including failed and
  incomplete ones);
- ``figures/*.png``.

The report is computed once (:func:`nfpf.report.content.compute_report`: every number,
table and the data of the figures) and then laid out by one renderer per format:
:mod:`~nfpf.report.csv_files`, :mod:`~nfpf.report.latex`, :mod:`~nfpf.report.figure_files`,
:mod:`~nfpf.report.markdown` and :mod:`~nfpf.report.webpage`. The definitions of every number
are in :mod:`nfpf.report.stats` and docs/reports.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nfpf.report.content import DEFAULT_REFERENCE, compute_report, summary_table
from nfpf.report.csv_files import write_csv
from nfpf.report.figure_files import DrawnFigures, draw_figures
from nfpf.report.latex import write_latex
from nfpf.report.markdown import summary_text, write_markdown
from nfpf.report.webpage import write_html

__all__ = ["DEFAULT_REFERENCE", "ReportPaths", "build_report", "log_report_to_wandb",
           "summary_table"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`build_report` wrote, and the summary as text for the terminal.

    Attributes
    ----------
    index : Path
        The self-contained HTML report (``index.html``).
    markdown, csv, latex : Path
        ``report.md``, ``summary.csv`` and ``report.tex``.
    plot : Path or None
        The first accuracy-vs-budget figure.
    summary_text : str
        Markdown tables (per group, overall, win/tie/loss) and the run counts.
    tables : dict of str -> Path
        Every CSV written, by name (summary, ranks, auc, wilcoxon, wtl, runs).
    figures : dict of str -> Path
        Every PNG written, by name.
    notes : list of str
        What could not be done (e.g. a figure whose dataset could not be loaded).
    n_complete, n_failed, n_incomplete, n_skipped : int
    """

    index: Path
    markdown: Path
    csv: Path
    plot: Path | None
    summary_text: str
    latex: Path | None = None
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_complete: int = 0
    n_failed: int = 0
    n_incomplete: int = 0
    n_skipped: int = 0


def build_report(root: str | Path, out_dir: str | Path | None = None, *,
                 reference: str | None = DEFAULT_REFERENCE, alpha: float = 0.05,
                 metric: str = "accuracy", figures: bool = True,
                 max_montage: int = 40) -> ReportPaths:
    """Collect every run below ``root`` and write the report (see the module docstring).

    Parameters
    ----------
    root : path
        Directory searched recursively for run directories.
    out_dir : path, optional
        Where to write (default ``root/report``).
    reference : str, optional
        Selector compared against every other one (win/tie/loss, Wilcoxon). When the default
        ("nfpf") was not run the comparison is left out with a note; another name that was
        not run is an error.
    alpha : float
        Significance level of the win/tie/loss rule.
    metric : {"accuracy", "balanced_accuracy", "best_accuracy"}
    figures : bool
        Also draw the figures (off: tables only, faster).
    max_montage : int
        Images shown per selector in the montage.

    Raises
    ------
    FileNotFoundError
        When ``root`` holds no run at all.
    ValueError
        For a ``reference`` other than the default that was not run, a bad ``alpha`` or
        ``metric``.
    """
    content = compute_report(root, reference=reference, alpha=alpha, metric=metric)
    out = Path(out_dir) if out_dir is not None else content.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    csvs = write_csv(content, out)
    latex = write_latex(content, out)
    figs = draw_figures(content, out / "figures", max_montage) if figures else DrawnFigures()
    notes = [*content.notes, *figs.notes]
    for note in notes:
        log.warning("report: %s", note)
    markdown = write_markdown(content, figs, out)
    index = write_html(content, figs, out)
    accuracy_plots = [p for name, p in figs.files.items() if name.startswith("accuracy_")]
    runs = content.runs
    return ReportPaths(
        index=index, markdown=markdown, csv=csvs["summary"],
        plot=accuracy_plots[0] if accuracy_plots else None,
        summary_text=summary_text(content), latex=latex, tables=csvs, figures=figs.files,
        notes=notes, n_complete=len(runs.complete), n_failed=len(runs.failed),
        n_incomplete=len(runs.incomplete), n_skipped=len(runs.skipped))


def log_report_to_wandb(paths: ReportPaths, *, project: str = "nfpf", entity: str | None = None,
                        mode: str | None = None, dir: str | Path | None = None,
                        name: str | None = None) -> str:
    """Log a built report's CSV tables (``wandb.Table``) and figures (``wandb.Image``) to one
    W&B run (offline unless logged in, see :func:`nfpf.evaluation.tracking.resolve_wandb_mode`).

    Returns the W&B run directory.
    """
    from nfpf.evaluation.tracking import log_report

    tables = {key: pd.read_csv(path) for key, path in paths.tables.items()}
    return log_report(tables, paths.figures, project=project, entity=entity, mode=mode,
                      dir=str(dir if dir is not None else paths.index.parent), name=name,
                      summary={"runs/complete": paths.n_complete,
                               "runs/failed": paths.n_failed,
                               "runs/incomplete": paths.n_incomplete,
                               "runs/skipped": paths.n_skipped})
