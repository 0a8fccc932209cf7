"""Faster up-front validation of large Hydra sweeps.

Before launching a batch, Hydra's basic sweeper composes the full config of *every* job to
catch composition errors early (about 0.2 s per job here: 20 minutes for a 6,000-run
protocol, before the first run starts). Whether a job's config composes depends only on its
config-group choices (``dataset=``, ``selector=``, ...) and on which keys it overrides: the
configs have no typed schema, so two jobs that differ only in the values of plain keys
(``seed=0`` vs ``seed=1``) compose or fail together. :func:`install` makes the sweeper
validate one job per distinct combination of group choices and overridden keys, which
catches the same errors; every job is still composed in full when it runs. The sweeper plugin
``hydra/sweeper=representative`` (``hydra_plugins/nfpf_sweepers``, selected by
``conf/config.yaml``) does it through Hydra's own extension point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["config_groups", "exclusive_budgets", "representative_jobs", "signature"]


def representative_jobs(batch: Sequence[Sequence[str]],
                        groups: set[str]) -> list[Sequence[str]]:
    """One job per distinct (group choices, overridden keys) combination, in batch order.

    Parameters
    ----------
    batch : sequence of override lists, e.g. ``[["selector=nfpf", "seed=0"], ...]``
    groups : the config groups (``"selector"``, ``"hydra/launcher"``, ...)
    """
    seen: set[tuple[str, ...]] = set()
    kept = []
    for overrides in batch:
        signature_key = signature(overrides, groups)
        if signature_key not in seen:
            seen.add(signature_key)
            kept.append(overrides)
    return kept


def signature(overrides: Sequence[str], groups: set[str]) -> tuple[str, ...]:
    """What decides whether a job's config composes: its config-group overrides in full and
    the keys (not the values) of its other overrides, sorted."""
    parts = []
    for override in overrides:
        key, _, _ = override.partition("=")
        name = key.lstrip("+~").split("@")[0].replace(".", "/")
        parts.append(override if name in groups else key)
    return tuple(sorted(parts))


def config_groups(loader) -> set[str]:
    """Every config group (``"selector"``, ``"hydra/launcher"``, ...) ``loader`` knows."""
    groups: set[str] = set()
    pending = [""]
    while pending:
        parent = pending.pop()
        for name in loader.list_groups(parent):
            path = f"{parent}/{name}" if parent else name
            groups.add(path)
            pending.append(path)
    return groups


def exclusive_budgets(params: Mapping[str, str], arguments: Sequence[str]
                      ) -> tuple[dict[str, str], list[str], str | None]:
    """Drop the ``budget_per_class`` sweep of a sweep that sets ``budget``.

    A run with a ``budget`` ignores ``budget_per_class`` (the pipeline's rule), so a sweep over
    both would run every (selector, budget, seed) once per ``budget_per_class`` value, under
    different directories. ``budget`` wins, as in a single run.

    Parameters
    ----------
    params : the sweeper's ``params`` (the experiment's sweep), key -> value
    arguments : the command line's overrides, e.g. ``["budget=10,20", "seed=0,1"]``

    Returns
    -------
    params, arguments : without ``budget_per_class`` when a ``budget`` is set
    note : one line saying what was dropped, or None when nothing was
    """
    def key(override: str) -> str:
        return override.partition("=")[0].lstrip("+~")

    budgets = [value for name, value in [*params.items(),
                                         *(a.partition("=")[::2] for a in arguments)]
               if key(name) == "budget" and value.strip() not in ("null", "")]
    dropped = [f"{name}={value}" for name, value in params.items()
               if key(name) == "budget_per_class"]
    dropped += [a for a in arguments if key(a) == "budget_per_class"]
    if not budgets or not dropped:
        return dict(params), list(arguments), None
    kept_params = {name: value for name, value in params.items()
                   if key(name) != "budget_per_class"}
    kept_arguments = [a for a in arguments if key(a) != "budget_per_class"]
    note = (f"budget={budgets[-1]} is set, so {' and '.join(dropped)} is dropped from the "
            "sweep (a run with a budget ignores budget_per_class)")
    return kept_params, kept_arguments, note
