"""The selection stage of ``nfpf-select``: run the selector on the features, and look up
its own score of each pick."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from nfpf.app.features import Features
from nfpf.app.options import Request, SelectError
from nfpf.core.selection import Pool, Selector

__all__ = ["pick_scores", "run_selection"]

log = logging.getLogger(__name__)

_HISTORY_INDEX_KEYS = ("chosen", "selected", "indices", "picked", "added")
_HISTORY_SCORE_KEYS = ("scores", "score", "selected_scores", "rd")


def pick_scores(selector: Selector, indices: np.ndarray, n: int) -> np.ndarray:
    """The selector's own score of each pick, NaN where it exposes none.

    Looked up, in this order: ``pick_scores_`` (one score per returned index); ``scores_``
    over the pool (or over ``candidates_`` when that is set, as ALMS/DUAL do); per-round
    ``history_`` records holding the round's chosen indices (``chosen``/``selected``/...) and
    their scores (``scores``/``score``/...) -- NFPF's RD score in the round a sample was
    picked (its initial seeds have none).

    Parameters
    ----------
    selector : Selector, after ``select``
    indices : ndarray of shape (budget,)
    n : int, pool size

    Returns
    -------
    ndarray of shape (budget,), float64
    """
    indices = np.asarray(indices, dtype=np.int64)
    out = np.full(indices.size, np.nan)
    direct = getattr(selector, "pick_scores_", None)
    if direct is not None and np.size(direct) == indices.size:
        return np.asarray(direct, dtype=np.float64).ravel()
    scores = getattr(selector, "scores_", None)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        candidates = getattr(selector, "candidates_", None)
        if candidates is None and scores.size == n:
            return scores[indices]
        if candidates is not None and np.size(candidates) == scores.size:
            lookup = dict(zip(np.asarray(candidates).tolist(), scores.tolist(), strict=True))
            return np.asarray([lookup.get(int(i), np.nan) for i in indices])
    lookup: dict[int, float] = {}
    for record in getattr(selector, "history_", None) or []:
        if not isinstance(record, Mapping):
            continue
        idx_key = next((k for k in _HISTORY_INDEX_KEYS if k in record), None)
        score_key = next((k for k in _HISTORY_SCORE_KEYS if k in record), None)
        if idx_key is None or score_key is None:
            continue
        chosen, values = record[idx_key], record[score_key]
        if np.ndim(chosen) != 1 or np.ndim(values) != 1 or len(chosen) != len(values):
            continue
        for i, v in zip(chosen, values, strict=True):
            lookup.setdefault(int(i), float(v))
    if lookup:
        out = np.asarray([lookup.get(int(i), np.nan) for i in indices])
    return out


def run_selection(request: Request, features: Features) -> tuple[np.ndarray, np.ndarray]:
    """The selector's ``budget`` picks (indices in order) and their :func:`pick_scores`."""
    pool = Pool(features=features.X, images=features.pixels, n_classes=request.n_classes)
    log.info("selecting %d of %d with %s", request.budget, pool.n, request.method)
    try:
        indices = request.selector.select(pool, request.budget, seed=request.seed)
    except ValueError as err:
        raise SelectError(f"{request.method}: {err}") from None
    return indices, pick_scores(request.selector, indices, pool.n)
