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

The definitions of every number are in :mod:`nfpf.report.stats` and docs/reports.md.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nfpf.evaluation.records import INDICES_FILE
from nfpf.report.collect import GROUP_KEYS, LABELS_MARK, RunSet, collect_runs, mark_label_using
from nfpf.report.stats import (
    auc_table,
    average_ranks,
    cell_stats,
    coverage_stats,
    paired_tests,
    wtl_summary,
)
from nfpf.report.tables import (
    Table,
    auc_group_table,
    failed_table,
    group_tables,
    overall_table,
    slug,
    tests_table,
    to_html,
    to_latex,
    to_markdown,
    wtl_table,
)

__all__ = ["ReportPaths", "build_report", "log_report_to_wandb", "summary_table"]

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = "nfpf"


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


def summary_table(runs: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean, std (ddof=1) and count of ``metric`` over seeds per (experiment, dataset,
    features, classifier, budget, selector), from
    :func:`nfpf.evaluation.records.load_runs` output."""
    complete = runs[runs["status"] == "complete"].copy()
    complete["value"] = pd.to_numeric(complete[metric], errors="coerce")
    return cell_stats(complete)


# ----------------------------------------------------------------------------- figures

def _pick_runs(complete: pd.DataFrame, n_classes: int | None
               ) -> tuple[int, int, dict[str, Path]]:
    """(budget, seed, selector -> run dir) for the embedding and montage of one group.

    Budget: the smallest budget >= the number of classes (1 per class), else the largest;
    seed: the smallest seed that the most selectors have at that budget.
    """
    budgets = sorted(int(b) for b in complete["budget"].dropna().unique())
    at_least = [b for b in budgets if n_classes is None or b >= n_classes]
    budget = at_least[0] if at_least else budgets[-1]
    rows = complete[complete["budget"] == budget]
    counts = rows.groupby("seed")["selector"].nunique()
    seed = int(counts[counts == counts.max()].index.min())
    rows = rows[rows["seed"] == seed].sort_values(["selector", "classifier"])
    dirs = {}
    for selector, block in rows.groupby("selector", sort=True):
        for run_dir in block["run_dir"]:
            if (Path(run_dir) / INDICES_FILE).is_file():
                dirs[selector] = Path(run_dir)
                break
    return budget, seed, dirs


def _load_dataset(config: dict[str, Any]):
    from hydra.utils import instantiate

    return instantiate(config)


def _pool_figures(runs: RunSet, out: Path, colors: dict[str, str], reference: str | None,
                  show_experiment: bool, notes: list[str],
                  max_montage: int) -> dict[tuple, dict[str, Path]]:
    """Embedding and montage per (experiment, dataset, features); {group: {kind: path}}."""
    from nfpf.report import figures as fig

    made: dict[tuple, dict[str, Path]] = {}
    complete = runs.complete
    cached: tuple[tuple[str, str], Any] | None = None
    for group, block in complete.groupby(["experiment", "dataset", "features"], sort=True):
        experiment, dataset_name, features = group
        config = runs.dataset_configs.get((experiment, dataset_name))
        if config is None:
            notes.append(f"{dataset_name}: no dataset config in result.json; no embedding.")
            continue
        n_classes = block["n_classes"].dropna()
        budget, seed, dirs = _pick_runs(block, int(n_classes.iloc[0]) if len(n_classes) else None)
        if not dirs:
            notes.append(f"{dataset_name} · {features}: no indices.npy found; no embedding "
                         "or montage.")
            continue
        try:
            if cached is None or cached[0] != (experiment, dataset_name):
                cached = ((experiment, dataset_name), _load_dataset(config))
            data = cached[1]
        except Exception as error:  # a missing data root must not sink the report
            notes.append(f"{dataset_name}: dataset could not be reloaded for the embedding "
                         f"and montage ({type(error).__name__}: {error}).")
            continue
        picks = {}
        for selector in sorted(dirs, key=lambda s: (s != reference, s)):
            idx = np.load(dirs[selector] / INDICES_FILE)
            if idx.size and (idx.min() < 0 or idx.max() >= len(data.pool_labels)):
                notes.append(f"{dirs[selector]}: indices out of range of the {dataset_name} "
                             "pool; skipped in the embedding.")
                continue
            picks[selector] = idx
        if not picks:
            continue
        name = slug("_".join(group))
        prefix = f"{experiment}: " if show_experiment else ""
        title = f"{prefix}{dataset_name} · {features} — budget {budget}, seed {seed}"
        made[group] = {}
        try:
            coords = fig.pca_2d(data.flat("pool"), seed=0)
            made[group]["embedding"] = fig.embedding_figure(
                coords, data.pool_labels, picks, f"PCA of the pool: {title}",
                out / f"embedding_{name}.png")
        except Exception as error:
            notes.append(f"{dataset_name}: embedding failed ({type(error).__name__}: {error}).")
        if data.is_image and data.image_shape[0] in (1, 3):
            try:
                made[group]["montage"] = fig.montage_figure(
                    data.pool_images, data.pool_labels, data.class_names, picks,
                    f"Picked images: {title}", out / f"montage_{name}.png",
                    max_images=max_montage)
            except Exception as error:
                notes.append(f"{dataset_name}: montage failed ({type(error).__name__}: "
                             f"{error}).")
        else:
            notes.append(f"{dataset_name}: not an image dataset; no montage.")
    return made


# ----------------------------------------------------------------------------- report

def _runs_csv(runs: RunSet) -> pd.DataFrame:
    complete = runs.complete.assign(status="complete")
    failed = runs.failed.copy()
    skipped = runs.skipped.copy()
    incomplete = pd.DataFrame({"run_dir": [str(p) for p in runs.incomplete],
                               "status": "incomplete"})
    columns = [*GROUP_KEYS, "selector", "budget", "budget_per_class", "seed", "status",
               "accuracy", "balanced_accuracy", "best_accuracy", "classes_covered", "error",
               "run_dir"]
    frames = [f.reindex(columns=columns) for f in (complete, failed, skipped, incomplete)
              if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _status_text(runs: RunSet) -> str:
    """"Runs: 30 complete, 2 failed, 1 incomplete (sweep size 36, 3 not started)."."""
    n_ok, n_failed, n_inc = len(runs.complete), len(runs.failed), len(runs.incomplete)
    text = f"Runs: {n_ok} complete, {n_failed} failed, {n_inc} incomplete"
    if len(runs.skipped):
        text += f", {len(runs.skipped)} skipped"
    if len(runs.duplicates):
        text += f", {len(runs.duplicates)} duplicates ignored (newest kept)"
    if runs.expected_total is not None:
        missing = runs.expected_total - n_ok - n_failed - n_inc - len(runs.skipped)
        text += f" (sweep size {runs.expected_total}"
        text += f", {missing} not started)" if missing > 0 else ")"
    return text + "."


def _status_html(runs: RunSet) -> str:
    problems = len(runs.failed) or len(runs.incomplete) or (
        runs.expected_total is not None and runs.expected_total > len(runs.complete))
    return f'<p class="{"warn" if problems else "ok"}">{html.escape(_status_text(runs))}</p>'


def _incomplete_table(runs: RunSet, root: Path) -> Table:
    from nfpf.report.tables import _relative

    return Table(name="incomplete", title=f"Incomplete runs ({len(runs.incomplete)})",
                 header=["run dir"], rows=[[_relative(p, root)] for p in runs.incomplete],
                 note="Run directories Hydra created that hold neither result.json nor "
                      "failed.json: killed, still running, or not yet rerun.")


def _latex_document(tables: list[Table]) -> str:
    # A page break every 4 tables keeps LaTeX below its limit of unplaced floats.
    parts = [to_latex(t) + ("\n\\clearpage" if (i + 1) % 4 == 0 else "")
             for i, t in enumerate(tables)]
    body = "\n\n".join(parts)
    return ("% Generated by nfpf-report. Tables need \\usepackage{booktabs} (wide ones graphicx).\n"
            "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
            "\\usepackage{graphicx}\n"
            "\\usepackage[margin=1.5cm,landscape]{geometry}\n\\begin{document}\n"
            f"{body}\n\\end{{document}}\n")


#: The note of every table holding label-using rows.
LABELS_NOTE = (f"{LABELS_MARK}: the selection read labels (supervised active learning al/*, "
               "or every pool label: al/full); a reference for UAL, not a UAL method.")

#: UAL selectors compared against every label-using one in their own win/tie/loss tables.
AL_REFERENCES = ("nfpf", "nfpf_plus")


def _versus_label_using(complete: pd.DataFrame, label_using: list[str], alpha: float,
                        scope: tuple[str, ...], out: Path, csvs: dict[str, Path]
                        ) -> list[Table]:
    """Win/tie/loss of NFPF and NFPF+ against each label-using row (one table each); the
    tests and counts also go to ``wilcoxon_al_<ref>.csv`` and ``wtl_al_<ref>.csv``."""
    tables = []
    present = set(complete["selector"])
    for ref in AL_REFERENCES:
        if ref not in present or not label_using:
            continue
        tests = paired_tests(complete[complete["selector"].isin([ref, *label_using])], ref,
                             alpha)
        if tests.empty:
            continue
        summary = wtl_summary(tests, scope)
        csvs[f"wilcoxon_al_{ref}"] = out / f"wilcoxon_al_{ref}.csv"
        csvs[f"wtl_al_{ref}"] = out / f"wtl_al_{ref}.csv"
        tests.to_csv(csvs[f"wilcoxon_al_{ref}"], index=False)
        summary.to_csv(csvs[f"wtl_al_{ref}"], index=False)
        table = wtl_table(summary, ref, alpha, int(tests["n_pairs"].max()))
        table.name, table.title = f"wtl_al_{ref}", f"{ref} against supervised AL"
        table.note += " " + LABELS_NOTE
        tables.append(table)
    return tables


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
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must lie in (0, 1), e.g. 0.05.")
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "report"
    runs = collect_runs(root, metric=metric)
    # Selections that read labels (supervised AL, the full pool) are marked in every table
    # and figure: they are references for UAL, not UAL methods.
    runs.complete, label_using = mark_label_using(runs.complete)
    if reference is not None and f"{reference} {LABELS_MARK}" in label_using:
        reference = f"{reference} {LABELS_MARK}"
    complete = runs.complete
    log.info("report: %d complete, %d failed, %d incomplete runs below %s", len(complete),
             len(runs.failed), len(runs.incomplete), root)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    show_exp = len(runs.experiments) > 1
    selectors = runs.selectors
    if reference is not None and reference not in selectors:
        if complete.empty:
            notes.append("No complete run: no tables.")
        elif reference == DEFAULT_REFERENCE:
            notes.append(f"No runs of the reference selector {reference!r} (selectors: "
                         f"{', '.join(selectors)}); win/tie/loss left out. Choose one with "
                         "--reference NAME.")
        else:
            raise ValueError(f"reference={reference!r} is not among the selectors of {root}: "
                             f"{', '.join(selectors)}. Choose one of them.")
        reference = None

    # ---- numbers
    stats = cell_stats(complete)
    ranks = average_ranks(stats) if len(stats) else pd.DataFrame(
        columns=["selector", "mean_rank", "n_cells"])
    auc = auc_table(stats)
    tests = paired_tests(complete, reference, alpha) if reference else None
    scope = ("experiment", "features", "classifier") if show_exp else ("features", "classifier")
    wtl = wtl_summary(tests, scope) if tests is not None else None

    # ---- CSV
    csvs = {"summary": out / "summary.csv", "ranks": out / "ranks.csv", "auc": out / "auc.csv",
            "runs": out / "runs.csv"}
    stats.to_csv(csvs["summary"], index=False)
    ranks.to_csv(csvs["ranks"], index=False)
    auc.to_csv(csvs["auc"], index=False)
    _runs_csv(runs).to_csv(csvs["runs"], index=False)
    if tests is not None:
        csvs["wilcoxon"] = out / "wilcoxon.csv"
        csvs["wtl"] = out / "wtl.csv"
        tests.to_csv(csvs["wilcoxon"], index=False)
        wtl.to_csv(csvs["wtl"], index=False)

    # ---- tables
    per_group = group_tables(stats, metric, reference, show_exp) if len(stats) else []
    overall = overall_table(ranks, auc, metric) if len(stats) else None
    auc_groups = auc_group_table(auc, reference, show_exp) if len(auc) else None
    wtl_tab = None
    if wtl is not None and len(wtl):
        wtl_tab = wtl_table(wtl, reference, alpha, int(tests["n_pairs"].max()))
    tests_tab = tests_table(tests, show_exp) if tests is not None and len(tests) else None
    failed_tab = failed_table(runs.failed, root) if len(runs.failed) else None
    skipped_tab = None
    if len(runs.skipped):
        skipped_tab = failed_table(runs.skipped, root)
        skipped_tab.name = "skipped"
        skipped_tab.title = f"Skipped runs ({len(runs.skipped)})"
        skipped_tab.note = ("Runs the sweep skipped on purpose (e.g. a budget larger than the "
                            "dataset's pool); they are not failures.")
    incomplete_tab = _incomplete_table(runs, root) if runs.incomplete else None
    al_tabs = _versus_label_using(complete, label_using, alpha, scope, out, csvs)
    if label_using:
        for table in (*per_group, *(t for t in (overall, auc_groups) if t is not None)):
            table.note = (table.note + " " + LABELS_NOTE).strip()
    summary_tables = [t for t in (overall, wtl_tab, *al_tabs, auc_groups) if t is not None]
    paper_tables = [*per_group, *summary_tables]

    latex_dir = out / "latex"
    latex_dir.mkdir(exist_ok=True)
    for table in paper_tables:
        (latex_dir / f"{table.name}.tex").write_text(to_latex(table) + "\n", encoding="utf-8")
    latex_path = out / "report.tex"
    latex_path.write_text(_latex_document(paper_tables), encoding="utf-8")

    # ---- figures
    fig_dir = out / "figures"
    figs: dict[str, Path] = {}
    per_dataset_figs: dict[tuple, dict[str, Path]] = {}
    if figures and len(stats):
        from nfpf.report import figures as fig

        colors = fig.selector_colors(selectors, reference)
        for group, block in stats.groupby(["experiment", "dataset", "features"], sort=True):
            name = slug("_".join(group))
            prefix = f"{group[0]}: " if show_exp else ""
            try:
                path = fig.accuracy_curves(block, f"{prefix}{group[1]} · {group[2]}", colors,
                                           fig_dir / f"accuracy_{name}.png", metric, reference)
                figs[f"accuracy_{name}"] = path
                per_dataset_figs.setdefault(group, {})["accuracy"] = path
            except Exception as error:
                notes.append(f"accuracy figure of {group}: {type(error).__name__}: {error}")
        coverage = coverage_stats(complete)
        if coverage["mean"].notna().any():
            titles = {g: (f"{g[0]}: " if show_exp else "") + f"{g[1]} · {g[2]}"
                      for g in coverage.groupby(["experiment", "dataset", "features"]).groups}
            try:
                figs["coverage"] = fig.coverage_figure(coverage, titles, colors,
                                                       fig_dir / "coverage.png", reference)
            except Exception as error:
                notes.append(f"coverage figure: {type(error).__name__}: {error}")
        pool_figs = _pool_figures(runs, fig_dir, colors, reference, show_exp, notes,
                                  max_montage)
        for group, made in pool_figs.items():
            for kind, path in made.items():
                figs[path.stem] = path
                per_dataset_figs.setdefault(group, {})[kind] = path
    for note in notes:
        log.warning("report: %s", note)

    # ---- Markdown
    status = _status_text(runs)
    md = [f"# nfpf report: {root}", "", status, ""]
    if notes:
        md += ["", "Notes:", *[f"- {n}" for n in notes], ""]
    if summary_tables:
        md += ["## Overall", ""] + [to_markdown(t) + "\n" for t in summary_tables]
    md += ["## Per dataset", ""]
    by_dataset: dict[tuple, list[Table]] = {}
    for table in per_group:
        by_dataset.setdefault(tuple(table.key[:3]), []).append(table)
    for key in sorted(set(by_dataset) | set(per_dataset_figs)):
        for table in by_dataset.get(key, []):
            md += [to_markdown(table), ""]
        for kind, path in per_dataset_figs.get(key, {}).items():
            md += [f"![{kind}]({path.relative_to(out).as_posix()})", ""]
    if "coverage" in figs:
        md += ["## Class coverage", "", f"![coverage]({figs['coverage'].relative_to(out)})", ""]
    md += ["## Failed and incomplete runs", ""]
    md += [to_markdown(failed_tab) if failed_tab else "No failed runs.", ""]
    md += [to_markdown(incomplete_tab) if incomplete_tab else "No incomplete runs.", ""]
    if skipped_tab:
        md += [to_markdown(skipped_tab), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    # ---- HTML
    from nfpf.report.webpage import figure_html, page

    captions = {
        "accuracy": f"Mean test {metric.replace('_', ' ')} against budget (log axis); bands "
                    "are ± one std over seeds.",
        "embedding": "2-D PCA of the pool's pixels (light dots, coloured by true class; at "
                     "most 5,000 shown) and each selector's picks (large dots).",
        "montage": "The pool images each selector picked, in selection order, tagged with "
                   "their true class.",
    }
    sections = []
    status_html = _status_html(runs)
    if notes:
        status_html += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    sections.append(("runs", "Runs", status_html))
    if summary_tables:
        sections.append(("overall", "Overall", "\n".join(to_html(t) for t in summary_tables)))
    for key in sorted(set(by_dataset) | set(per_dataset_figs)):
        body = [to_html(t) for t in by_dataset.get(key, [])]
        for kind, path in per_dataset_figs.get(key, {}).items():
            body.append(figure_html(path, captions.get(kind, "")))
        head = (f"{key[0]}: " if show_exp else "") + f"{key[1]} · {key[2]}"
        sections.append((slug("ds_" + "_".join(key)), head, "\n".join(body)))
    if "coverage" in figs:
        sections.append(("coverage", "Class coverage", figure_html(
            figs["coverage"], "Number of classes among the picks (mean ± std over seeds) "
            "against budget; dotted: number of classes.")))
    problems = []
    if failed_tab:
        problems.append(to_html(failed_tab))
    else:
        problems.append("<p>No failed runs.</p>")
    problems.append(to_html(incomplete_tab) if incomplete_tab else "<p>No incomplete runs.</p>")
    if skipped_tab:
        problems.append(f"<details><summary>{html.escape(skipped_tab.title)}</summary>"
                        f"{to_html(skipped_tab)}</details>")
    sections.append(("failed", "Failed, incomplete and skipped runs" if skipped_tab
                     else "Failed and incomplete runs", "\n".join(problems)))
    if tests_tab is not None:
        sections.append(("tests", "Paired tests per cell",
                         f"<details><summary>{len(tests_tab.rows)} tests</summary>"
                         f"{to_html(tests_tab)}</details>"))
    meta = (f"Runs below <code>{html.escape(str(root))}</code> · metric "
            f"<b>{html.escape(metric)}</b> · reference <b>{html.escape(str(reference))}</b> · "
            f"alpha {alpha} · generated {datetime.now().isoformat(timespec='seconds')}")
    index = out / "index.html"
    index.write_text(page("nfpf report", meta, sections), encoding="utf-8")

    # ---- terminal summary
    text = [to_markdown(t) for t in per_group]
    text += [to_markdown(t) for t in (overall, wtl_tab) if t is not None]
    text.append(status)
    if len(runs.failed):
        shown = runs.failed.head(10)
        text.append("Failed runs:\n" + "\n".join(
            f"- {r.dataset}/{r.features}/{r.selector}/{r.classifier} budget="
            f"{r.budget if not pd.isna(r.budget) else r.budget_per_class} seed={r.seed}: "
            f"{r.error}" for r in shown.itertuples())
            + (f"\n- ... and {len(runs.failed) - 10} more (see the report)"
               if len(runs.failed) > 10 else ""))
    accuracy_plots = [p for k, p in figs.items() if k.startswith("accuracy_")]
    return ReportPaths(
        index=index, markdown=md_path, csv=csvs["summary"],
        plot=accuracy_plots[0] if accuracy_plots else None,
        summary_text="\n\n".join(text), latex=latex_path, tables=csvs, figures=figs,
        notes=notes, n_complete=len(complete), n_failed=len(runs.failed),
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
