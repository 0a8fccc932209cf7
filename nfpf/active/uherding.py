"""UHerding (Bae et al., "Uncertainty Herding: One Active Learning Method for All Label
Budgets", ICLR 2025): MaxHerding's greedy with every sample weighted by its uncertainty."""

from __future__ import annotations

import logging
from numbers import Real
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import softmax
from sklearn.base import clone

from nfpf.active.base import ActiveStrategy
from nfpf.active.strategies import entropy_scores, least_confidence_scores, margin_scores
from nfpf.baselines.maxherding import herding_greedy
from nfpf.baselines.neighbors import as_float_array, l2_normalize
from nfpf.core.selection import Selector, check_choice, check_param

__all__ = ["TEMPERATURE_GRID", "UHerding", "expected_calibration_error", "fit_temperature",
           "uncertainty_weights"]

log = logging.getLogger(__name__)

#: The released code's temperatures: 1.0, 1.1, ..., 19.9.
TEMPERATURE_GRID = np.round(np.arange(10, 200) / 10.0, 1)
UNCERTAINTIES = ("margin", "entropy", "least_confidence")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """ECE with ``n_bins`` equal-width confidence bins over (0, 1]:
    ``sum_b |B_b| / m * |accuracy(B_b) - mean confidence(B_b)|``.

    Parameters
    ----------
    probs : ndarray of shape (m, K)
    labels : ndarray of shape (m,), class positions in ``0..K-1``
    n_bins : int
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, n_bins: int,
                    grid: np.ndarray = TEMPERATURE_GRID) -> float:
    """The temperature of ``grid`` whose ``softmax(logits / T)`` has the smallest ECE
    (first one on ties), as the released code picks it."""
    errors = [expected_calibration_error(softmax(logits / t, axis=1), labels, n_bins)
              for t in grid]
    return float(grid[int(np.argmin(errors))])


def uncertainty_weights(probs: np.ndarray, kind: str) -> np.ndarray:
    """Per-sample uncertainty (m,): margin ``1 - (p1 - p2)``, entropy or ``1 - p1``."""
    if kind == "margin":
        return 1.0 + margin_scores(probs)
    if kind == "entropy":
        return entropy_scores(probs)
    return least_confidence_scores(probs)


def _logits(model: Any, X: np.ndarray) -> np.ndarray:
    """Class logits (m, K): ``log predict_proba`` where the model has it (a softmax of it
    is ``predict_proba`` again), else ``decision_function``."""
    if hasattr(model, "predict_proba"):
        return np.log(np.clip(model.predict_proba(X), 1e-300, None))
    scores = np.asarray(model.decision_function(X), dtype=np.float64)
    return np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores


class UHerding(ActiveStrategy):
    """Uncertainty herding: each round, greedy generalized coverage of the pool where the
    gain of a candidate c is ``(1/n) sum_x u(x) max(k(c, x) - m(x), 0)``.

    ``u`` is the per-round model's uncertainty (``uncertainty``, from
    ``softmax(logits / T)``), 0 on labelled samples; ``m`` starts at the labelled set's
    coverage (:func:`nfpf.baselines.maxherding.herding_greedy`). With ``temperature="fit"``
    (released) T is chosen on the labelled set: a copy of the model fitted on its first 70 %
    (in labelling order) and T of :data:`TEMPERATURE_GRID` minimising the ECE on the rest,
    with as many bins as classes, over the held-out samples of classes the copy saw (T = 1
    when the first part lacks two classes or none of the rest can be scored). With
    ``bandwidth="adaptive"`` (released) h is the smallest nonzero distance between labelled
    samples, each round. With u constant it is MaxHerding with a labelled start; as h -> 0
    it picks what uncertainty sampling picks. With no labels u is 1 everywhere and the
    greedy is MaxHerding's: the initial set is ``init="maxherding"`` by default (the
    released code's first step), ``"random"`` as in the other AL strategies.

    Parameters
    ----------
    init, init_size, rounds, model : see :class:`~nfpf.active.base.ActiveStrategy`
    uncertainty : {"margin", "entropy", "least_confidence"}
    temperature : "fit" or float > 0
    bandwidth : "adaptive" or float > 0
    normalize : bool
        L2-normalise the features first (released code).
    chunk_size : int, optional
        Rows per kernel block (:func:`~nfpf.baselines.maxherding.herding_greedy`).
    """

    def __init__(self, init: str | Selector = "maxherding", init_size: int | None = None,
                 rounds: int = 4, model: Any = None, uncertainty: str = "margin",
                 temperature: str | float = "fit", bandwidth: str | float = "adaptive",
                 normalize: bool = True, chunk_size: int | None = None):
        self.uncertainty = uncertainty
        self.temperature = temperature
        self.bandwidth = bandwidth
        self.normalize = normalize
        self.chunk_size = chunk_size
        super().__init__(init=init, init_size=init_size, rounds=rounds, model=model)

    def check_params(self) -> None:
        super().check_params()
        check_choice("selector.uncertainty", self.uncertainty, UNCERTAINTIES)
        check_param("selector.temperature", self.temperature, Real, low=0, closed="neither",
                    also=("fit",), hint=" ('fit': the released grid search)")
        check_param("selector.bandwidth", self.bandwidth, Real, low=0, closed="neither",
                    also=("adaptive",), hint=" ('adaptive': the released rule)")
        check_choice("selector.normalize", self.normalize, (True, False))
        check_param("selector.chunk_size", self.chunk_size, low=1, also=(None,))

    def _query(self, pool, inputs, model, labelled, unlabelled, size, rng, seed):
        X = as_float_array(pool.features)
        if self.normalize:
            X = l2_normalize(X)
        T = self.round_temperature(model, inputs, labelled, self.labels_)
        weights = uncertainty_weights(softmax(_logits(model, inputs) / T, axis=1),
                                      self.uncertainty)
        weights[labelled] = 0.0
        h = self.round_bandwidth(X, labelled)
        result = herding_greedy(X, size, labelled=labelled, weights=weights, bandwidth=h,
                                chunk_size=self.chunk_size)
        log.info("uherding: T = %.1f, h = %.4g, %d picks", T, h, size)
        return result.picks

    def round_temperature(self, model: Any, inputs: np.ndarray, labelled: np.ndarray,
                          labels: np.ndarray) -> float:
        """``self.temperature``, or the released fit on the ``labelled`` samples, whose
        ``labels`` are in labelling order (see the class)."""
        if self.temperature != "fit":
            return float(self.temperature)
        cut = int(0.7 * labelled.size)
        fit_part, check_part = labelled[:cut], labelled[cut:]
        if check_part.size == 0 or np.unique(labels[:cut]).size < 2:
            return 1.0
        copy = clone(model).fit(inputs[fit_part], labels[:cut])
        logits = _logits(copy, inputs[check_part])
        known = np.isin(labels[cut:], copy.classes_)  # a class the copy never saw: no ECE
        if not known.any():
            return 1.0
        position = np.searchsorted(copy.classes_, labels[cut:])
        return fit_temperature(logits[known], position[known], n_bins=len(model.classes_))

    def round_bandwidth(self, X: np.ndarray, labelled: np.ndarray) -> float:
        """``self.bandwidth``, or the smallest nonzero distance between labelled samples
        (1.0, the released scripts' fixed h, when every distance is 0)."""
        if self.bandwidth != "adaptive":
            return float(self.bandwidth)
        distances = pdist(X[labelled])
        distances = distances[distances > 0]
        return float(distances.min()) if distances.size else 1.0
