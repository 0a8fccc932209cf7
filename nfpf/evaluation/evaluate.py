"""Evaluation: labels enter here, and only here, after the selection is fixed.

A classifier is any scikit-learn-style estimator (``fit``/``predict``); the Lightning one
is :class:`nfpf.evaluation.classifiers.LightningClassifier`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

__all__ = ["evaluate_selection", "fit_predict", "selection_stats"]


def selection_stats(picked_labels: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Class histogram of the picks (length K) and the number of classes they cover."""
    hist = np.bincount(np.asarray(picked_labels, dtype=np.int64), minlength=n_classes)
    return {"classes_covered": int((hist > 0).sum()), "class_histogram": hist.tolist()}


def fit_predict(classifier, x_train, y_train, x_test, y_test=None) -> np.ndarray:
    """Fit a fresh clone of ``classifier`` and predict ``x_test``.

    With a single class among the picks no classifier can be fitted; every test sample is
    then predicted as that class (what any classifier trained on such data would do).
    """
    return _fit_predict(classifier, x_train, y_train, x_test, y_test)[0]


def _fit_predict(classifier, x_train, y_train, x_test, y_test=None):
    """Predictions and the fitted model's per-epoch test curve, when it records one.

    Classifiers that declare ``evaluates_during_fit = True`` (the deep ones) get the test
    split as ``fit(..., eval_set=(x_test, y_test))`` and report ``best_accuracy_`` and
    ``last_accuracy_`` (the released NFPF code reports both); the others never see it.
    """
    classes = np.unique(y_train)
    if classes.size == 1:
        return np.full(len(x_test), classes[0], dtype=np.int64), {}
    model = clone(classifier)
    if getattr(model, "evaluates_during_fit", False) and y_test is not None:
        model.fit(x_train, y_train, eval_set=(x_test, y_test))
        curve = {
            "best_accuracy": _float_or_none(getattr(model, "best_accuracy_", None)),
            "last_accuracy": _float_or_none(getattr(model, "last_accuracy_", None)),
            "best_epoch": getattr(model, "best_epoch_", None),
            "history": getattr(model, "history_", []),
        }
    else:
        model.fit(x_train, y_train)
        curve = {}
    return np.asarray(model.predict(x_test)), curve


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def evaluate_selection(
    classifier,
    pool_features: np.ndarray,
    pool_labels: np.ndarray,
    indices: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    n_classes: int,
) -> dict[str, Any]:
    """Label the selected samples, train ``classifier`` on them and score it on the test split.

    Returns accuracy, balanced accuracy, per-class accuracy (recall, length K; NaN-free: a
    class absent from the test split gets 0) and the selection statistics; for classifiers
    that evaluate during training also ``best_accuracy``, ``last_accuracy``, ``best_epoch``
    and the per-epoch ``history``.
    """
    picked = np.asarray(pool_labels)[indices]
    predicted, curve = _fit_predict(classifier, pool_features[indices], picked, test_features,
                                    np.asarray(test_labels))
    per_class = recall_score(
        test_labels, predicted, labels=np.arange(n_classes), average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(test_labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(test_labels, predicted)),
        "per_class_accuracy": [float(v) for v in per_class],
        **selection_stats(picked, n_classes),
        **curve,
    }
