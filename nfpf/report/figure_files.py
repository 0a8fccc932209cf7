"""The figures renderer: draws the PNG files of a :class:`~nfpf.report.content.ReportContent`
into ``figures/`` -- accuracy against budget per (experiment, dataset, features), class
coverage, and the embedding and montage of the picks (the dataset is reloaded from its
config for these two).

A figure that cannot be drawn never sinks the report: it becomes a note instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfpf.report.content import FIGURE_KEYS, PoolPicks, ReportContent
from nfpf.report.tables import Table, slug

__all__ = ["DrawnFigures", "draw_figures", "per_dataset"]

@dataclass
class DrawnFigures:
    """The PNG files drawn, and what could not be drawn.

    Attributes
    ----------
    files : dict of str -> Path
        Every PNG by name (its stem), in drawing order.
    by_group : dict of tuple -> dict of str -> Path
        (experiment, dataset, features) -> kind (accuracy, embedding, montage) -> PNG.
    notes : list of str
    """

    files: dict[str, Path] = field(default_factory=dict)
    by_group: dict[tuple, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, group: tuple | None, kind: str, path: Path) -> None:
        self.files[path.stem] = path
        if group is not None:
            self.by_group.setdefault(group, {})[kind] = path


def per_dataset(content: ReportContent, figures: DrawnFigures
                ) -> list[tuple[tuple, list[Table], dict[str, Path]]]:
    """(experiment, dataset, features), its tables and its figures, in sorted order."""
    tables: dict[tuple, list[Table]] = {}
    for table in content.per_group:
        tables.setdefault(tuple(table.key[:3]), []).append(table)
    return [(key, tables.get(key, []), figures.by_group.get(key, {}))
            for key in sorted(set(tables) | set(figures.by_group))]


def draw_figures(content: ReportContent, fig_dir: Path, max_montage: int = 40
                 ) -> DrawnFigures:
    """Draw every figure of ``content`` into ``fig_dir``; ``max_montage`` images per
    selector in a montage."""
    from nfpf.report import figures as fig

    drawn = DrawnFigures()
    if not len(content.stats):
        return drawn
    colors = fig.selector_colors(content.runs.selectors, content.reference)
    _accuracy_figures(content, fig_dir, colors, drawn)
    coverage = content.coverage
    if coverage is not None and coverage["mean"].notna().any():
        titles = {g: _group_label(g, content.show_experiment)
                  for g in coverage.groupby(list(FIGURE_KEYS)).groups}
        try:
            drawn.add(None, "coverage", fig.coverage_figure(
                coverage, titles, colors, fig_dir / "coverage.png", content.reference))
        except Exception as error:
            drawn.notes.append(f"coverage figure: {type(error).__name__}: {error}")
    _pool_figures(content, fig_dir, drawn, max_montage)
    return drawn


def _group_label(group: tuple, show_experiment: bool) -> str:
    """"digits · raw", after "experiment: " when the report spans several."""
    prefix = f"{group[0]}: " if show_experiment else ""
    return f"{prefix}{group[1]} · {group[2]}"


def _accuracy_figures(content: ReportContent, fig_dir: Path, colors: dict[str, str],
                      drawn: DrawnFigures) -> None:
    from nfpf.report import figures as fig

    for group, block in content.stats.groupby(list(FIGURE_KEYS), sort=True):
        name = slug("_".join(group))
        try:
            path = fig.accuracy_curves(block, _group_label(group, content.show_experiment),
                                       colors, fig_dir / f"accuracy_{name}.png",
                                       content.metric, content.reference)
            drawn.add(group, "accuracy", path)
        except Exception as error:
            drawn.notes.append(f"accuracy figure of {group}: {type(error).__name__}: {error}")


def _load_dataset(config: dict[str, Any]):
    from hydra.utils import instantiate

    return instantiate(config)


def _pool_figures(content: ReportContent, fig_dir: Path, drawn: DrawnFigures,
                  max_montage: int) -> None:
    """Embedding and montage of each (experiment, dataset, features) with picks."""
    cached: tuple[tuple[str, str], Any] | None = None
    for plan in content.pool_picks:
        if plan.problem is not None:
            drawn.notes.append(plan.problem)
            continue
        key = plan.group[:2]
        try:
            if cached is None or cached[0] != key:
                cached = (key, _load_dataset(plan.dataset_config))
            data = cached[1]
        except Exception as error:  # a missing data root must not sink the report
            drawn.notes.append(f"{plan.group[1]}: dataset could not be reloaded for the "
                               f"embedding and montage ({type(error).__name__}: {error}).")
            continue
        picks = _picks_in_pool(plan, len(data.pool_labels), drawn.notes)
        if picks:
            _draw_pool(plan, data, picks, content.show_experiment, fig_dir, drawn,
                       max_montage)


def _picks_in_pool(plan: PoolPicks, n_pool: int, notes: list[str]) -> dict[str, Any]:
    """The picks of ``plan`` that index the reloaded pool (others skipped with a note)."""
    picks = {}
    for selector, idx in plan.picks.items():
        if idx.size and (idx.min() < 0 or idx.max() >= n_pool):
            notes.append(f"{plan.run_dirs[selector]}: indices out of range of the "
                         f"{plan.group[1]} pool; skipped in the embedding.")
            continue
        picks[selector] = idx
    return picks


def _draw_pool(plan: PoolPicks, data, picks: dict[str, Any], show_experiment: bool,
               fig_dir: Path, drawn: DrawnFigures, max_montage: int) -> None:
    from nfpf.report import figures as fig

    dataset_name = plan.group[1]
    name = slug("_".join(plan.group))
    prefix = f"{plan.group[0]}: " if show_experiment else ""
    title = (f"{prefix}{dataset_name} · {plan.group[2]} — budget {plan.budget}, "
             f"seed {plan.seed}")
    try:
        coords = fig.pca_2d(data.flat("pool"), seed=0)
        drawn.add(plan.group, "embedding", fig.embedding_figure(
            coords, data.pool_labels, picks, f"PCA of the pool: {title}",
            fig_dir / f"embedding_{name}.png"))
    except Exception as error:
        drawn.notes.append(f"{dataset_name}: embedding failed ({type(error).__name__}: "
                           f"{error}).")
    if not (data.is_image and data.image_shape[0] in (1, 3)):
        drawn.notes.append(f"{dataset_name}: not an image dataset; no montage.")
        return
    try:
        drawn.add(plan.group, "montage", fig.montage_figure(
            data.pool_images, data.pool_labels, data.class_names, picks,
            f"Picked images: {title}", fig_dir / f"montage_{name}.png",
            max_images=max_montage))
    except Exception as error:
        drawn.notes.append(f"{dataset_name}: montage failed ({type(error).__name__}: {error}).")
