"""Reconstruction Difference (RD) scores of NFPF, vectorised: the one home of the RD score.

``RD(x) = err_cur(x) - err_ref(x)``: high when the reference SFLM (fitted on the whole pool)
explains ``x`` well but the current SFLM (fitted on the selection) does not.

- ``"pearson"`` (default of the released code): ``err_cur = 1 - Pearson(x, x̂_cur)`` and
  ``err_ref`` is the reference MSE min–max normalised over the candidates being scored.
- ``"mse"``: both errors are per-sample mean squared errors.

All functions work on every candidate at once (no loop over samples); memory is that of
the inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "SCORES",
    "minmax_normalise",
    "mse_error",
    "pearson_error",
    "per_sample_error",
    "rd_scores",
    "reconstruction_difference",
]

SCORES = ("pearson", "mse")


def _as_float(a: Any) -> torch.Tensor:
    """Tensor view of ``a`` in its own float precision (float32 or float64)."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        a = np.asarray(a)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())
    if t.ndim == 1:
        t = t[None, :]
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float64)
    return t


def _pair(X: Any, X_hat: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_float(X), _as_float(X_hat)
    if y.shape[0] == 1 and x.shape[0] != 1 and y.shape[1:] == x.shape[1:]:
        y = y.expand_as(x)  # one reconstruction for every sample (e.g. the pool mean)
    if x.shape != y.shape:
        raise ValueError(f"X has shape {tuple(x.shape)} but its reconstruction "
                         f"{tuple(y.shape)}; they must match.")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


def mse_error(X: Any, X_hat: Any) -> np.ndarray:
    """Per-sample mean squared error over dimensions; see :func:`per_sample_error`."""
    x, y = _pair(X, X_hat)
    diff = y - x
    return (diff * diff).mean(1).cpu().numpy().astype(np.float64)


def pearson_error(X: Any, X_hat: Any) -> np.ndarray:
    """Per-sample ``1 - Pearson(x, x̂)`` over dimensions, in [0, 2]; see
    :func:`per_sample_error`.

    A sample whose input or reconstruction is constant has no defined correlation; its
    correlation is taken as 0 (error 1) instead of NaN.
    """
    x, y = _pair(X, X_hat)
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)
    num = (xc * yc).sum(1)
    den = torch.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
    r = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                    torch.zeros_like(den))
    return (1.0 - r.clamp(-1.0, 1.0)).cpu().numpy().astype(np.float64)


def per_sample_error(X: Any, X_hat: Any, kind: str) -> np.ndarray:
    """Per-sample reconstruction error over dimensions.

    Parameters
    ----------
    X : array-like or Tensor of shape (n, d)
    X_hat : array-like or Tensor of shape (n, d) or (1, d)
        Reconstructions (one row broadcasts to every sample).
    kind : {"pearson", "mse"}
        ``1 - Pearson(x, x̂)`` (:func:`pearson_error`) or the mean squared error
        (:func:`mse_error`).

    Returns
    -------
    errors : ndarray of shape (n,), float64
    """
    if kind == "pearson":
        return pearson_error(X, X_hat)
    if kind == "mse":
        return mse_error(X, X_hat)
    raise ValueError(f"kind/score must be one of {SCORES}; got {kind!r}.")


def minmax_normalise(values: Any) -> np.ndarray:
    """Min–max normalise to [0, 1]; a constant vector maps to zeros. Shape (n,) -> (n,)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v.copy()
    lo, hi = v.min(), v.max()
    if hi == lo:
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def rd_scores(
    err_cur: Any, err_ref: Any, score: str = "pearson", normalise_ref: bool = True
) -> np.ndarray:
    """Combine per-sample errors into RD scores.

    Parameters
    ----------
    err_cur : array-like of shape (m,)
        Current-model error of each candidate (``1 - Pearson`` for ``"pearson"``, MSE for
        ``"mse"``).
    err_ref : array-like of shape (m,)
        Reference-model MSE of the same candidates.
    score : {"pearson", "mse"}
    normalise_ref : bool, default=True
        With ``"pearson"``, min–max normalise ``err_ref`` over these m candidates, as the
        released code does (so a candidate's score depends on the other candidates'
        reference errors). False: ``err_ref`` is taken as already normalised, e.g. once
        over the whole pool (NFPF's ``ref_normalisation="pool"``). Ignored for ``"mse"``.

    Returns
    -------
    rd : ndarray of shape (m,), float64
    """
    err_cur = np.asarray(err_cur, dtype=np.float64)
    err_ref = np.asarray(err_ref, dtype=np.float64)
    if err_cur.shape != err_ref.shape:
        raise ValueError(f"err_cur has shape {err_cur.shape} but err_ref {err_ref.shape}.")
    if score == "pearson":
        return err_cur - (minmax_normalise(err_ref) if normalise_ref else err_ref)
    if score == "mse":
        return err_cur - err_ref
    raise ValueError(f"score must be one of {SCORES}; got {score!r}.")


def reconstruction_difference(
    X: Any, X_hat_cur: Any, err_ref: Any, score: str = "pearson"
) -> np.ndarray:
    """RD score of every candidate at once.

    Parameters
    ----------
    X : array-like of shape (m, d)
        The candidates.
    X_hat_cur : array-like of shape (m, d)
        Their reconstruction by the current SFLM.
    err_ref : array-like of shape (m,)
        Their reference-SFLM MSE.
    score : {"pearson", "mse"}

    Returns
    -------
    rd : ndarray of shape (m,), float64
    """
    return rd_scores(per_sample_error(X, X_hat_cur, score), err_ref, score)
