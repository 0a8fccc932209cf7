"""The Markdown renderer: ``report.md`` (every table, figures linked from ``figures/``) and
the summary the command prints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nfpf.report.content import ReportContent
from nfpf.report.figure_files import DrawnFigures, per_dataset
from nfpf.report.tables import DASH, Table

__all__ = ["summary_text", "to_markdown", "write_markdown"]

#: Failed runs listed in the terminal summary (the report lists them all).
SHOWN_FAILURES = 10


def to_markdown(table: Table, heading: str = "###") -> str:
    """GitHub-flavoured Markdown: a heading, the table, the note in italics."""

    def cell(text: str, bold: bool) -> str:
        text = str(text).replace("|", "\\|").replace("\n", " ")
        return f"**{text}**" if bold and text != DASH else text

    lines = [f"{heading} {table.title}", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    for i, row in enumerate(table.rows):
        lines.append("| " + " | ".join(cell(c, table.is_bold(i, j))
                                       for j, c in enumerate(row)) + " |")
    if table.note:
        lines += ["", f"*{table.note}*"]
    return "\n".join(lines)


def write_markdown(content: ReportContent, figures: DrawnFigures, out: Path) -> Path:
    """Write ``report.md`` into ``out`` (figure links relative to it); returns its path."""
    notes = [*content.notes, *figures.notes]
    md = [f"# nfpf report: {content.root}", "", content.status, ""]
    if notes:
        md += ["", "Notes:", *[f"- {n}" for n in notes], ""]
    if content.summary_tables:
        md += ["## Overall", ""] + [to_markdown(t) + "\n" for t in content.summary_tables]
    md += ["## Per dataset", ""]
    for _, tables, drawn in per_dataset(content, figures):
        md += [line for table in tables for line in (to_markdown(table), "")]
        md += [line for kind, path in drawn.items()
               for line in (f"![{kind}]({path.relative_to(out).as_posix()})", "")]
    if "coverage" in figures.files:
        md += ["## Class coverage", "",
               f"![coverage]({figures.files['coverage'].relative_to(out)})", ""]
    md += ["## Failed and incomplete runs", ""]
    md += [to_markdown(content.failed) if content.failed else "No failed runs.", ""]
    md += [to_markdown(content.incomplete) if content.incomplete else "No incomplete runs.", ""]
    if content.skipped:
        md += [to_markdown(content.skipped), ""]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def summary_text(content: ReportContent) -> str:
    """The tables per group, overall and win/tie/loss, the run counts and the first failed
    runs, for the terminal."""
    text = [to_markdown(t) for t in content.per_group]
    text += [to_markdown(t) for t in (content.overall, content.wtl) if t is not None]
    text.append(content.status)
    failed = content.runs.failed
    if len(failed):
        lines = [f"- {r.dataset}/{r.features}/{r.selector}/{r.classifier} budget="
                 f"{r.budget if not pd.isna(r.budget) else r.budget_per_class} seed={r.seed}: "
                 f"{r.error}" for r in failed.head(SHOWN_FAILURES).itertuples()]
        if len(failed) > SHOWN_FAILURES:
            lines.append(f"- ... and {len(failed) - SHOWN_FAILURES} more (see the report)")
        text.append("Failed runs:\n" + "\n".join(lines))
    return "\n\n".join(text)
