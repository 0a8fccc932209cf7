"""The HTML renderer: ``index.html``, one self-contained page of every table and figure
(inline CSS, tables as HTML, figures as base64 PNG).

Nothing is loaded from elsewhere (no scripts, stylesheets, fonts or remote images), so the
file can be mailed, archived or opened offline and looks the same.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from nfpf.report.content import ReportContent
from nfpf.report.figure_files import DrawnFigures, per_dataset
from nfpf.report.tables import DASH, Table, slug

__all__ = ["figure_html", "page", "to_html", "write_html"]

#: The caption of each kind of figure.
CAPTIONS = {
    "accuracy": "Mean test {metric} against budget (log axis); bands are ± one std over seeds.",
    "embedding": "2-D PCA of the pool's pixels (light dots, coloured by true class; at "
                 "most 5,000 shown) and each selector's picks (large dots).",
    "montage": "The pool images each selector picked, in selection order, tagged with "
               "their true class.",
    "coverage": "Number of classes among the picks (mean ± std over seeds) against budget; "
                "dotted: number of classes.",
}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1250px;padding:1.2em 2em;color:#222;line-height:1.4;background:#fff}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em}.meta{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.86em;margin:.3em 0}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.25em .6em;
text-align:right;white-space:nowrap}
th{background:#f4f4f4;border-top:2px solid #444;border-bottom:1.5px solid #444}
td:first-child,th:first-child{text-align:left}
tbody tr:last-child td{border-bottom:2px solid #444}tbody tr:hover{background:#fafafa}
.scroll{overflow-x:auto}.note{color:#555;font-size:.82em;margin-top:.2em;max-width:1000px}
figure{margin:.8em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4em .8em}
.ok{background:#eef8ee;border-left:4px solid #4a4;padding:.4em .8em}
nav ul{columns:2;font-size:.9em}td.err{white-space:normal;text-align:left;
max-width:520px;font-family:monospace;font-size:.9em}
details summary{cursor:pointer;color:#235}
"""


def figure_html(path: Path, caption: str = "") -> str:
    """A ``<figure>`` with ``path`` embedded as a base64 PNG data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img alt="{html.escape(Path(path).stem)}" '
            f'src="data:image/png;base64,{data}">{cap}</figure>')


def page(title: str, meta: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document.

    Parameters
    ----------
    title : str
    meta : str
        HTML shown under the title (already escaped).
    sections : list of (anchor id, heading, body HTML)
    """
    nav = "".join(f'<li><a href="#sec-{html.escape(a)}">{html.escape(h)}</a></li>'
                  for a, h, _ in sections)
    body = "\n".join(f'<section id="sec-{html.escape(a)}"><h2>{html.escape(h)}</h2>\n{b}</section>'
                     for a, h, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><div class=\"meta\">{meta}</div>"
        f"<nav><ul>{nav}</ul></nav>\n{body}\n</body></html>\n"
    )


def to_html(table: Table, heading: str = "h3") -> str:
    """An HTML ``<table>`` with its heading and note (no external resources)."""
    esc = html.escape
    parts = [f'<{heading} id="{esc(table.name)}">{esc(table.title)}</{heading}>',
             '<div class="scroll"><table>', "<thead><tr>"
             + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr></thead><tbody>"]
    for i, row in enumerate(table.rows):
        cells = []
        for j, c in enumerate(row):
            text = esc(str(c))
            if table.is_bold(i, j) and c != DASH:
                text = f"<b>{text}</b>"
            cells.append(f'<td class="err">{text}</td>' if j in table.wrap
                         else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if table.note:
        parts.append(f'<p class="note">{esc(table.note)}</p>')
    return "\n".join(parts)


def write_html(content: ReportContent, figures: DrawnFigures, out: Path) -> Path:
    """Write ``index.html`` into ``out``; returns its path."""
    sections = [("runs", "Runs", _status_html(content, [*content.notes, *figures.notes]))]
    if content.summary_tables:
        sections.append(("overall", "Overall",
                         "\n".join(to_html(t) for t in content.summary_tables)))
    captions = {**CAPTIONS, "accuracy": CAPTIONS["accuracy"].format(
        metric=content.metric.replace("_", " "))}
    for key, tables, drawn in per_dataset(content, figures):
        body = [to_html(t) for t in tables]
        body += [figure_html(path, captions.get(kind, "")) for kind, path in drawn.items()]
        head = (f"{key[0]}: " if content.show_experiment else "") + f"{key[1]} · {key[2]}"
        sections.append((slug("ds_" + "_".join(key)), head, "\n".join(body)))
    if "coverage" in figures.files:
        sections.append(("coverage", "Class coverage",
                         figure_html(figures.files["coverage"], captions["coverage"])))
    sections.append(_problems_section(content))
    if content.tests is not None:
        sections.append(("tests", "Paired tests per cell",
                         f"<details><summary>{len(content.tests.rows)} tests</summary>"
                         f"{to_html(content.tests)}</details>"))
    meta = (f"Runs below <code>{html.escape(str(content.root))}</code> · metric "
            f"<b>{html.escape(content.metric)}</b> · reference "
            f"<b>{html.escape(str(content.reference))}</b> · alpha {content.alpha} · "
            f"generated {datetime.now().isoformat(timespec='seconds')}")
    path = out / "index.html"
    path.write_text(page("nfpf report", meta, sections), encoding="utf-8")
    return path


def _status_html(content: ReportContent, notes: list[str]) -> str:
    status = (f'<p class="{"warn" if content.has_problems else "ok"}">'
              f"{html.escape(content.status)}</p>")
    if notes:
        status += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    return status


def _problems_section(content: ReportContent) -> tuple[str, str, str]:
    """The failed, incomplete and (collapsed) skipped runs."""
    body = [to_html(content.failed) if content.failed else "<p>No failed runs.</p>",
            to_html(content.incomplete) if content.incomplete else "<p>No incomplete runs.</p>"]
    if content.skipped:
        body.append(f"<details><summary>{html.escape(content.skipped.title)}</summary>"
                    f"{to_html(content.skipped)}</details>")
    heading = ("Failed, incomplete and skipped runs" if content.skipped
               else "Failed and incomplete runs")
    return "failed", heading, "\n".join(body)
