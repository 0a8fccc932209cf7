"""Running an active-learning strategy: :func:`select_with_oracle` (library) and
:func:`run_with_oracle` (one call shared with :func:`nfpf.evaluation.pipeline.run`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nfpf.active.base import ActiveStrategy
from nfpf.active.oracle import Oracle
from nfpf.core.selection import Pool, check_seed

__all__ = ["check_strategy_config", "make_strategy", "run_with_oracle",
           "select_with_oracle"]


def make_strategy(method: str, **options: Any) -> ActiveStrategy:
    """The strategy ``conf/selector/al/<method>.yaml`` describes (``method`` with or without
    the ``al/`` prefix), with ``options`` merged in."""
    from nfpf.core.api import CONFIG_DIR, make_selector

    name = method if method.startswith("al/") else f"al/{method}"
    if not (CONFIG_DIR / "selector" / f"{name}.yaml").is_file():
        known = sorted(f"al/{p.stem}" for p in (CONFIG_DIR / "selector" / "al").glob("*.yaml"))
        raise ValueError(f"Unknown active-learning strategy {method!r}. Known: "
                         f"{', '.join(known)}.")
    strategy = make_selector(name, **options)
    if not isinstance(strategy, ActiveStrategy):
        raise ValueError(f"{name!r} builds {type(strategy).__name__}, not an ActiveStrategy.")
    return strategy


def check_strategy_config(config: Any, budget: int, n: int, run_model: Any = None,
                          seed: int = 0) -> None:
    """Raise the bad-input errors of a selector config that builds an AL strategy (budget,
    rounds, initial set, per-round model) before any work; a no-op for a UAL selector."""
    from hydra.utils import get_class, instantiate

    target = config.get("_target_") if hasattr(config, "get") else None
    if target is None or not issubclass(get_class(str(target)), ActiveStrategy):
        return
    try:
        strategy = instantiate(config)
    except Exception as error:  # Hydra wraps the constructor's one-line ValueError
        if isinstance(error.__cause__, ValueError):
            raise error.__cause__ from None
        raise
    strategy.validate(budget, n, run_model, seed)


def run_with_oracle(strategy: ActiveStrategy, pool: Pool, budget: int, labels: np.ndarray,
                    *, seed: int, model: Any = None, model_inputs: np.ndarray | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Run ``strategy`` with an :class:`Oracle` over ``labels``; check the label count.

    Returns the queried indices and a record: ``labels_queried``, ``label_using`` (True),
    the strategy's ``info`` and per-round ``history``.
    """
    expected = strategy.labels_needed(budget, pool.n)
    oracle = Oracle(labels, budget=expected)
    indices = strategy.select(pool, budget, oracle, seed=seed, model=model,
                              model_inputs=model_inputs)
    if oracle.n_queried != expected or len(indices) != expected:
        raise RuntimeError(f"{type(strategy).__name__} queried {oracle.n_queried} labels and "
                           f"returned {len(indices)} indices; {expected} were due.")
    return indices, {"labels_queried": oracle.n_queried, "label_using": True,
                     "info": strategy.info_, "history": strategy.history_}


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
    indices, _ = run_with_oracle(strategy, pool, budget, np.asarray(labels), seed=seed,
                                 model=model, model_inputs=model_inputs)
    return indices
