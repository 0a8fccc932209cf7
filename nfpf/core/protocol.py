"""The one protocol every kind of selector answers: what a selection needs and returns.

A selector names its kind in the ClassVar ``kind``; four kinds ship, registered here so that
every process (a report's included) knows them:

- ``label_free`` (:class:`nfpf.core.Selector`): sees the pool, returns the picks;
- ``ranking`` (:class:`nfpf.core.RankingSelector`): sees the pool, returns a ranking that
  each budget cuts (one ranking serves every budget of a sweep);
- ``label_using`` (:class:`nfpf.active.ActiveStrategy`): sees the pool, an oracle and a
  per-round model, returns its queries in query order;
- ``full_pool`` (:class:`nfpf.active.FullPool`): every label, whatever the budget.

Every selector answers two calls:

- ``plan_selection(n, budget, seed, model)`` -> :class:`SelectionPlan`: the bad-input
  errors of a selection of ``budget`` from ``n`` samples, raised before any work, and what
  the selection needs (how many labels it queries through an oracle) and depends on (what
  stands for the budget in a cache key, whether the run's classifier shapes the picks);
- ``run_selection(request)`` -> :class:`SelectionResult`: the selection itself.

:func:`plan_selection` and :func:`run_selection` are how every caller (``nfpf-run``'s
pipeline, :func:`nfpf.select`, :func:`nfpf.select_with_oracle`) uses a selector: labels reach
only a selector whose plan queries them, and the result is checked against the plan. A new
kind is a base class with those two methods and a :func:`register_kind` call; nothing that
runs selectors changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nfpf.core.selection import Pool

__all__ = [
    "FULL_POOL",
    "LABEL_FREE",
    "LABEL_USING",
    "RANKING",
    "SelectionPlan",
    "SelectionRequest",
    "SelectionResult",
    "SelectorKind",
    "kind_of",
    "plan_selection",
    "register_kind",
    "run_selection",
    "selector_kinds",
]

#: What a selection of a kind returns.
RETURNS = ("picks", "ranking", "queries")


@dataclass(frozen=True)
class SelectorKind:
    """A kind of selector, as the registry, the reports and the docs describe it.

    Attributes
    ----------
    name : str
        The value of the ``kind`` ClassVar of its selectors (e.g. ``"label_free"``).
    label_using : bool
        Whether its selections read labels (through an oracle): such rows are references for
        UAL, never UAL methods, and :func:`nfpf.select` refuses them.
    returns : {"picks", "ranking", "queries"}
        What a selection gives: the picks, a ranking the budget cuts, or the queried indices.
    summary : str
        One line for the reports and the docs.
    """

    name: str
    label_using: bool
    returns: str
    summary: str

    def __post_init__(self) -> None:
        if self.returns not in RETURNS:
            raise ValueError(f"SelectorKind.returns must be one of {RETURNS}; got "
                             f"{self.returns!r}.")


_KINDS: dict[str, SelectorKind] = {}


def register_kind(kind: SelectorKind) -> SelectorKind:
    """Add ``kind`` to the registry (again with equal attributes: a no-op) and return it."""
    known = _KINDS.get(kind.name)
    if known is not None and known != kind:
        raise ValueError(f"selector kind {kind.name!r} is registered already as {known}.")
    _KINDS[kind.name] = kind
    return kind


def selector_kinds() -> dict[str, SelectorKind]:
    """The registered kinds by name (those of the modules imported so far)."""
    return dict(_KINDS)


def kind_of(selector: Any) -> SelectorKind:
    """The registered kind of a selector (an instance or a class): its ``kind`` ClassVar."""
    name = getattr(selector, "kind", None)
    if name not in _KINDS:
        who = selector.__name__ if isinstance(selector, type) else type(selector).__name__
        if name is None:
            raise TypeError(f"{who} is not a selector: it has no kind (subclass "
                            f"nfpf.core.Selector, or nfpf.active.ActiveStrategy).")
        raise TypeError(f"{who} has kind {name!r}, which is not registered; known kinds: "
                        f"{', '.join(sorted(_KINDS))}.")
    return _KINDS[name]


LABEL_FREE = register_kind(SelectorKind(
    "label_free", label_using=False, returns="picks",
    summary="label-free: sees the pool (features, images), returns the picks"))
RANKING = register_kind(SelectorKind(
    "ranking", label_using=False, returns="ranking",
    summary="label-free ranking: sees the pool, returns a ranking that each budget cuts"))
LABEL_USING = register_kind(SelectorKind(
    "label_using", label_using=True, returns="queries",
    summary="supervised active learning: queries labels through an oracle, in rounds"))
FULL_POOL = register_kind(SelectorKind(
    "full_pool", label_using=True, returns="queries",
    summary="the full-pool bound: every pool label, whatever the budget"))


@dataclass(frozen=True)
class SelectionPlan:
    """What a selection needs and depends on, known before any work.

    Attributes
    ----------
    kind : SelectorKind
    labels : int
        Labels the selection queries through an oracle (0: it sees the pool only).
    picks : int
        Indices a selection returns: the budget, or every pool index for ``full_pool``.
    budget_key : object
        What stands for the budget in a cache key of the selection: the budget itself, or
        for a ranking what its ranking depends on, so that budgets with one key share one.
    uses_run_model : bool
        Whether the run's classifier (given as ``model``) shapes the picks.
    """

    kind: SelectorKind
    labels: int
    picks: int
    budget_key: Any
    uses_run_model: bool = False


@dataclass(frozen=True)
class SelectionRequest:
    """One selection asked of a selector.

    Attributes
    ----------
    pool : Pool
        The unlabeled pool.
    budget : int
    seed : int
    labels : ndarray of shape (n,), optional
        The answers of the oracle; :func:`run_selection` hands them only to a selector whose
        plan queries labels.
    model : estimator, optional
        The run's classifier (a supervised strategy's per-round model unless it names one).
    model_inputs : ndarray of shape (n, ...), optional
        What that model trains on, when not the pool's features (or images).
    """

    pool: Pool
    budget: int
    seed: int
    labels: np.ndarray | None = None
    model: Any = None
    model_inputs: np.ndarray | None = None


@dataclass(frozen=True)
class SelectionResult:
    """What a selection returned.

    Attributes
    ----------
    indices : ndarray of shape (picks,), int64
        The samples to label, in the order they were chosen (queried).
    ranking : ndarray of shape (m,), int64, optional
        For a ranking, the whole ranking (m >= budget, best first) whose first ``budget``
        entries are ``indices``; a cache keeps it for every budget of the same key.
    queries : int, optional
        Labels queried through the oracle (None: none were).
    info : dict
        The selector's ``info_``: a small JSON-serialisable record of the selection.
    history : list of dict
        The selector's ``history_``: one record per round (empty for one-shot methods).
    """

    indices: np.ndarray
    ranking: np.ndarray | None = None
    queries: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stored(self) -> np.ndarray:
        """What a cache keeps: the ranking when there is one, else the indices; the indices
        of a plan are ``stored[:plan.picks]``."""
        return self.indices if self.ranking is None else self.ranking


def plan_selection(selector: Any, n: int, budget: int, seed: int = 0,
                   model: Any = None) -> SelectionPlan:
    """``selector``'s plan for ``budget`` of ``n`` samples (its bad-input errors first)."""
    kind_of(selector)
    plan = selector.plan_selection(n, budget, seed, model)
    if not isinstance(plan, SelectionPlan):
        raise TypeError(f"{type(selector).__name__}.plan_selection returned "
                        f"{type(plan).__name__}, not a SelectionPlan.")
    return plan


def run_selection(selector: Any, request: SelectionRequest,
                  plan: SelectionPlan | None = None) -> SelectionResult:
    """Run one selection of any kind and check what it returned against its plan.

    Parameters
    ----------
    selector : object with a registered ``kind``
    request : SelectionRequest
        Its ``labels`` are handed on only when the plan queries labels; a plan that does
        needs them.
    plan : SelectionPlan, optional
        ``plan_selection`` of the same request, when the caller made it already.

    Returns
    -------
    SelectionResult
        ``indices`` of the plan's length; ``queries`` equal to the plan's labels.
    """
    if plan is None:
        plan = plan_selection(selector, request.pool.n, request.budget, request.seed,
                              request.model)
    who = type(selector).__name__
    if plan.labels == 0:
        request = dataclasses.replace(request, labels=None)  # labels reach no label-free kind
    elif request.labels is None:
        raise ValueError(f"{who} queries labels: give the labels its oracle answers with "
                         f"(nfpf.select_with_oracle, or nfpf-run).")
    result = selector.run_selection(request)
    if not isinstance(result, SelectionResult):
        raise TypeError(f"{who}.run_selection returned {type(result).__name__}, not a "
                        f"SelectionResult.")
    if len(result.indices) != plan.picks or (result.queries or 0) != plan.labels:
        raise RuntimeError(f"{who} returned {len(result.indices)} indices and queried "
                           f"{result.queries or 0} labels; its plan said {plan.picks} and "
                           f"{plan.labels}.")
    return result
