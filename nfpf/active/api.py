"""Running an active-learning strategy from the library: :func:`make_strategy` and
:func:`select_with_oracle` (``nfpf-run`` runs it through :func:`nfpf.core.protocol.run_selection`
like every other selector)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nfpf.active.base import ActiveStrategy
from nfpf.core.protocol import SelectionRequest, run_selection
from nfpf.core.selection import Pool, check_seed

__all__ = ["make_strategy", "select_with_oracle"]


def make_strategy(method: str, **options: Any) -> ActiveStrategy:
    """The strategy ``conf/selector/al/<method>.yaml`` describes (``method`` with or without
    the ``al/`` prefix), with ``options`` merged in."""
    from nfpf.core.api import make_selector, selector_entry, selector_names

    name = method if method.startswith("al/") else f"al/{method}"
    if name not in selector_names() or not selector_entry(name).kind.label_using:
        known = [n for n in selector_names()
                 if n.startswith("al/") and selector_entry(n).kind.label_using]
        raise ValueError(f"Unknown active-learning strategy {method!r}. Known: "
                         f"{', '.join(known)}.")
    return make_selector(name, **options)


def select_with_oracle(
    X: np.ndarray | Pool,
    budget: int,
    labels: np.ndarray,
    method: str = "al/margin",
    seed: int = 0,
    *,
    model: Any = None,
    model_inputs: np.ndarray | None = None,
    images: np.ndarray | None = None,
    n_classes: int | None = None,
    **options: Any,
) -> np.ndarray:
    """Choose ``budget`` samples with a supervised active-learning strategy.

    Unlike :func:`nfpf.select`, the strategy queries labels: ``labels`` stands in for the
    annotator, behind an :class:`~nfpf.active.Oracle` that counts the queries (exactly
    ``budget``; the ``full`` bound queries every label).

    Parameters
    ----------
    X : ndarray of shape (n, d) or Pool
    budget : int
    labels : ndarray of shape (n,)
        The labels the oracle answers with.
    method : str
        A strategy of ``conf/selector/al/`` (e.g. "al/margin", "badge").
    seed : int
    model : estimator or str, optional
        The per-round model when the strategy's ``model`` option is unset; default logistic
        regression (``conf/classifier/logreg.yaml``). A name of ``conf/classifier/`` (e.g.
        "logreg") sets the strategy's ``model`` option.
    model_inputs : ndarray, optional
        What the model trains on (default ``X``).
    images, n_classes : optional
        As :func:`nfpf.select`.
    **options
        Overrides of the strategy's parameters (``rounds=5``, ``init="typiclust"``...).

    Returns
    -------
    ndarray of shape (budget,), int64: the queried indices in query order.

    Examples
    --------
    >>> import numpy as np, nfpf
    >>> X = np.random.default_rng(0).normal(size=(200, 8)); y = (X[:, 0] > 0).astype(int)
    >>> idx = nfpf.select_with_oracle(X, 20, y, method="al/margin", seed=0)
    >>> idx.shape
    (20,)
    """
    seed = check_seed(seed)
    if isinstance(model, str):  # a classifier name is the strategy's own ``model`` option
        options, model = {**options, "model": model}, None
    strategy = make_strategy(method, **options)
    pool = X if isinstance(X, Pool) else Pool(features=np.asarray(X), images=images,
                                             n_classes=n_classes)
    if model is None and strategy.model_use is not None and strategy.model is None:
        from nfpf.active.base import build_classifier

        model = build_classifier("logreg", seed)
    request = SelectionRequest(pool, budget, seed, labels=np.asarray(labels), model=model,
                               model_inputs=model_inputs)
    return run_selection(strategy, request).indices
