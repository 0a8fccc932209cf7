"""SFLM: the closed-form (extreme-learning-machine style) autoencoder of NFPF.

The SFLM of Liu, Lalman and Yang (2025), computed as the authors' released code does. The
fit depends on the data only through a few sums (``HᵀH``, ``HᵀT``, column sums and min/max
statistics), so it streams over batches (:meth:`SFLM.partial_fit` + :meth:`SFLM.end_pass`),
can be all-reduced across processes (:class:`SFLMStats`, see :mod:`nfpf.method.sflm_module`)
and never holds more than one batch of hidden activations.

One pass is enough in type 1: the per-unit rescaling of the hidden layer and the
per-dimension rescaling of the targets are affine, so the sums of the rescaled quantities
are recovered exactly from the sums of the raw ones (accumulated around a shift, the first
batch's mean, which keeps them well conditioned). In type 0 the target is the inverse
activation of the rescaled input, which is not affine, so a first (cheap) pass collects the
input min/max.

Quirks of the released code reproduced under ``faithful=True``:

- Q1: :meth:`SFLM.encode` rescales hidden units with the min/max of the batch being encoded
  (the default keeps the min/max from the fit).
- Q2: the output bias is the mean residual of the first output dimension, broadcast to all
  dimensions (the default uses each dimension's own mean residual).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field, fields, replace
from numbers import Real
from typing import Any, Protocol

import numpy as np
import torch

from nfpf.core.resources import blas_threads, ordered_map, single_threaded
from nfpf.core.selection import check_choice, check_param
from nfpf.method.checks import as_count, check_count
from nfpf.method.rows import FloatRows

__all__ = ["ACTIVATIONS", "DTYPES", "ORTHONORMALISATIONS", "SFLM", "Reducer", "SFLMState",
           "SFLMStats", "check_variant", "draw_weights", "gram"]

logger = logging.getLogger(__name__)

ACTIVATIONS = ("sigmoid", "sine")
ORTHONORMALISATIONS = ("svd", "qr")
TARGET_OFFSET = 1e-7  # the released code fits T = X + 1e-7
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The precisions of the SFLM's batch products.
DTYPES = tuple(_DTYPES)


def draw_weights(
    n_hidden: int, n_features: int, rng: np.random.Generator, orthonormalisation: str = "svd"
) -> tuple[np.ndarray, np.ndarray]:
    """Draw SFLM input weights and bias as the released code does.

    Parameters
    ----------
    n_hidden : int
        Number of hidden units L.
    n_features : int
        Input dimension d.
    rng : numpy.random.Generator
        Source of randomness.
    orthonormalisation : {"svd", "qr"}, default="svd"
        ``"svd"``: the left singular vectors, like ``scipy.linalg.orth`` in the released
        code. ``"qr"`` (our option, not the released code's): the Q factor of a Householder
        QR with a positive diagonal of R. Both are orthonormal bases of the same span of the
        same uniform draw, but different bases, so the SFLM and every selection change; QR
        costs about a third of the SVD (docs/benchmarks/nfpf.md), which matters only for a
        large reference (L = 1800 on d = 3072: seconds).

    Returns
    -------
    weights : ndarray of shape (L, d), float64
        Uniform in [-1, 1], then orthonormalised: rows orthonormal when L <= d, columns
        orthonormal when L > d.
    bias : ndarray of shape (L,), float64
        Uniform in [0, 1), normalised to unit Euclidean length.
    """
    check_choice("orthonormalisation", orthonormalisation, ORTHONORMALISATIONS)
    orth = _orth if orthonormalisation == "svd" else _orth_qr
    raw = rng.uniform(-1.0, 1.0, size=(n_hidden, n_features))
    if n_hidden <= n_features:
        weights = orth(raw.T).T
    else:
        weights = orth(raw)
    bias = rng.uniform(0.0, 1.0, size=n_hidden)
    bias /= np.linalg.norm(bias)
    return weights, bias


def _orth(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``a`` (``scipy.linalg.orth`` for full rank).

    Keeps ``min(a.shape)`` columns even when ``a`` is numerically rank deficient, so the
    weight matrix keeps its shape (scipy would drop columns).
    """
    # single-threaded: LAPACK's SVD gains little from threads and loses much to thread
    # wake-ups on a busy host (measured 0.5 s vs 12 s for 1800 x 784 on 2 shared cores)
    with blas_threads(1):
        u, _, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, : min(a.shape)]


def _orth_qr(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of a full-rank ``a`` (m >= k) by Householder QR.

    The signs are fixed by a positive diagonal of R, which makes the factorisation unique.
    """
    with blas_threads(1):  # as in _orth
        q, r = np.linalg.qr(a, mode="reduced")
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


class Reducer(Protocol):
    """Collective operations used to combine :class:`SFLMStats` across processes."""

    def all_reduce(self, tensor: torch.Tensor, op: str) -> torch.Tensor:
        """Return the element-wise ``op`` ("sum", "min" or "max") over all processes."""

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return process 0's value of ``tensor`` on every process."""


@dataclass
class SFLMStats:
    """Sufficient statistics of one SFLM fitting pass (all float64).

    Sums are taken around shifts (``shift_h``, ``shift_t``): ``gram = Σ (g - shift_h)(g -
    shift_h)ᵀ`` etc., where g is a sample's raw hidden vector (activated in type 1, linear in
    type 0, before the [-1, 1] rescaling) and t its raw target (``x + 1e-7`` in type 1; the
    final inverse-activated target in type 0).

    Attributes
    ----------
    n : int
        Number of samples seen.
    shift_h : Tensor of shape (L,)
    shift_t : Tensor of shape (d,)
    sum_h : Tensor of shape (L,)
        Σ (g - shift_h).
    sum_t : Tensor of shape (d,)
        Σ (t - shift_t).
    gram : Tensor of shape (L, L)
        Σ (g - shift_h)(g - shift_h)ᵀ.
    cross : Tensor of shape (L, d)
        Σ (g - shift_h)(t - shift_t)ᵀ.
    h_min, h_max : Tensor of shape (L,)
        Per-unit min/max of g.
    x_min, x_max : Tensor of shape (d,)
        Per-dimension min/max of ``x + 1e-7``.
    """

    n: int = 0
    shift_h: torch.Tensor | None = None
    shift_t: torch.Tensor | None = None
    sum_h: torch.Tensor | None = None
    sum_t: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    h_min: torch.Tensor | None = None
    h_max: torch.Tensor | None = None
    x_min: torch.Tensor | None = None
    x_max: torch.Tensor | None = None

    def reshift(self, shift_h: torch.Tensor, shift_t: torch.Tensor) -> None:
        """Re-express the sums around new shifts (exact algebra, float64)."""
        if self.n == 0:
            self.shift_h, self.shift_t = shift_h.clone(), shift_t.clone()
            return
        dh = self.shift_h - shift_h  # g - new = (g - old) + dh
        dt = self.shift_t - shift_t
        n = float(self.n)
        self.gram += (
            torch.outer(self.sum_h, dh) + torch.outer(dh, self.sum_h) + n * torch.outer(dh, dh)
        )
        self.cross += (
            torch.outer(self.sum_h, dt) + torch.outer(dh, self.sum_t) + n * torch.outer(dh, dt)
        )
        self.sum_h += n * dh
        self.sum_t += n * dt
        self.shift_h, self.shift_t = shift_h.clone(), shift_t.clone()

    def merge(self, other: SFLMStats) -> SFLMStats:
        """Add ``other``'s samples to these statistics (in place; returns self)."""
        if other.n == 0:
            return self
        if self.n == 0:
            for name in _STAT_FIELDS:
                value = getattr(other, name)
                setattr(self, name, value.clone() if isinstance(value, torch.Tensor) else value)
            return self
        other = SFLMStats(**{k: _clone(getattr(other, k)) for k in _STAT_FIELDS})
        other.reshift(self.shift_h, self.shift_t)
        self.n += other.n
        for name in ("sum_h", "sum_t", "gram", "cross"):
            getattr(self, name).add_(getattr(other, name))
        self.h_min = torch.minimum(self.h_min, other.h_min)
        self.h_max = torch.maximum(self.h_max, other.h_max)
        self.x_min = torch.minimum(self.x_min, other.x_min)
        self.x_max = torch.maximum(self.x_max, other.x_max)
        return self

    def all_reduce(self, reducer: Reducer) -> None:
        """Combine the statistics of every process in place (all end up identical).

        Every process must hold at least one sample.
        """
        if self.n == 0:
            raise RuntimeError("SFLM statistics are empty on this process; every process must "
                               "see at least one batch.")
        self.reshift(reducer.broadcast(self.shift_h), reducer.broadcast(self.shift_t))
        n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.gram.device)
        self.n = int(reducer.all_reduce(n, "sum").item())
        for name in ("sum_h", "sum_t", "gram", "cross"):
            setattr(self, name, reducer.all_reduce(getattr(self, name), "sum"))
        for name, op in (("h_min", "min"), ("h_max", "max"), ("x_min", "min"), ("x_max", "max")):
            setattr(self, name, reducer.all_reduce(getattr(self, name), op))


_STAT_FIELDS = ("n", "shift_h", "shift_t", "sum_h", "sum_t", "gram", "cross",
                "h_min", "h_max", "x_min", "x_max")


def _clone(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


@dataclass
class _Affine:
    """Per-column affine map ``y = scale * x + offset``."""

    scale: torch.Tensor
    offset: torch.Tensor


def _to_unit_range(lo: torch.Tensor, hi: torch.Tensor, shift: torch.Tensor | float) -> _Affine:
    """Affine map of ``x - shift`` to mapminmax's [-1, 1] given min/max of ``x``.

    A constant column (hi == lo) uses range 1, as the released code does (the fixture
    confirms it: constant pixels are mapped to -1 and decoded as ``(y + 1) / 2 + lo``).
    """
    span = hi - lo
    span = torch.where(span == 0, torch.ones_like(span), span)
    scale = 2.0 / span
    return _Affine(scale=scale, offset=scale * (shift - lo) - 1.0)

@dataclass(frozen=True)
class SFLMState:
    """The fitted state of an SFLM: its weights and what is needed to use them.

    Plain data, so that a fit can be kept, sent to another process or saved with a Lightning
    module: :meth:`SFLM.export_state` gives it, :meth:`SFLM.load_state` and
    :meth:`SFLM.from_state` take it, and the loaded SFLM encodes, reconstructs and scores
    bit for bit as the one that was fitted.

    Attributes
    ----------
    input_weights : Tensor of shape (L, d), in ``dtype``
        W of the hidden layer ``X Wᵀ - b``.
    bias : Tensor of shape (L,), in ``dtype``
    beta : Tensor of shape (L, d), float64
        Output weights.
    output_bias : Tensor of shape () (quirk Q2) or (d,), float64
        Subtracted from ``H β`` before the decoder activation.
    hidden_min, hidden_max : Tensor of shape (L,), float64
        Hidden-unit min/max over the fitted samples (before the [-1, 1] rescaling).
    target_min, target_max : Tensor of shape (d,), float64
        Min/max of ``x + 1e-7`` over the fitted samples.
    n_samples_seen : int
    activation : {"sigmoid", "sine"}
    type : {0, 1}
    dtype : {"float32", "float64"}
        Precision of the batch products the state was fitted with.
    """

    input_weights: torch.Tensor
    bias: torch.Tensor
    beta: torch.Tensor
    output_bias: torch.Tensor
    hidden_min: torch.Tensor
    hidden_max: torch.Tensor
    target_min: torch.Tensor
    target_max: torch.Tensor
    n_samples_seen: int
    activation: str
    type: int
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as ``{name: value}`` (tensors, str and int only: what
        ``torch.load(weights_only=True)`` reads back)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields as ``{name: tensor}``."""
        return {name: value for name, value in self.as_dict().items()
                if isinstance(value, torch.Tensor)}

    def check(self) -> None:
        """Raise a one-line ``ValueError`` unless the shapes fit one SFLM of L hidden units on
        d features, and the activation, type and dtype are valid."""
        _check_params(self.input_weights.shape[0], self.activation, self.type, 1.0, 1,
                      self.dtype, 1, None, "svd")
        n_hidden, d = self.input_weights.shape
        expected = {"input_weights": (n_hidden, d), "bias": (n_hidden,), "beta": (n_hidden, d),
                    "hidden_min": (n_hidden,), "hidden_max": (n_hidden,),
                    "target_min": (d,), "target_max": (d,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"SFLMState.{name} has shape {tuple(getattr(self, name).shape)}"
                                 f"; input_weights {(n_hidden, d)} needs {shape}.")
        if tuple(self.output_bias.shape) not in ((), (d,)):
            raise ValueError(f"SFLMState.output_bias has shape {tuple(self.output_bias.shape)}; "
                             f"expected () or ({d},).")


@dataclass
class _FitInProgress:
    """A fit under way: the weights of its current epoch and the sums of its current pass."""

    input_weights: torch.Tensor
    bias: torch.Tensor
    device: torch.device
    n_features: int
    phase: str  # "range" (type 0's min/max pass) or "sums"
    epoch: int = 0
    stats: SFLMStats = field(default_factory=SFLMStats)
    x_range: tuple[torch.Tensor, torch.Tensor] | None = None


def _fitted(name: str, doc: str) -> property:
    """A read-only view of the fitted state's field ``name`` (absent before a fit)."""

    def get(self: SFLM) -> Any:
        if self.state_ is None:
            raise AttributeError(f"{name}_: this SFLM is not fitted yet; call fit() first.")
        return getattr(self.state_, name)

    return property(get, doc=doc)


class SFLM:
    """Specific Feature Learning Machine: a closed-form single-hidden-layer autoencoder.

    Parameters
    ----------
    n_hidden : int, default=1800
        Number of hidden units L.
    activation : {"sigmoid", "sine"}, default="sigmoid"
        Activation g.
    type : {0, 1}, default=1
        1: activated encoder ``g(X Wᵀ - b)``, linear decoder. 0: linear encoder, decoder
        ``g(H β - bias)`` fitted to inverse-activated targets (``asin``); only defined for
        ``"sine"`` (``logit`` of targets in [-1, 0] is undefined).
    C : float, default=1e-2
        Regularisation: ``β = (I/C + HᵀH)⁻¹ HᵀT``.
    epochs : int, default=1
        Fitting rounds, as in the released code: each extra round sets ``W ← β`` and
        ``b ← output bias`` and solves again. With the Q2 fix the output bias is a vector;
        its mean is used as the scalar hidden bias of the next round.
    input_weights : array-like of shape (L, d), optional
        Explicit input weights W (e.g. the fixture's); drawn from ``random_state`` otherwise.
    bias : array-like of shape (L,) or (L, 1), optional
        Explicit hidden bias b; drawn from ``random_state`` otherwise.
    random_state : int, numpy.random.Generator or None, default=None
        Source of the default weights (see :func:`draw_weights`).
    orthonormalisation : {"svd", "qr"}, default="svd"
        How the default weights are orthonormalised (see :func:`draw_weights`): ``"svd"``
        as the released code, ``"qr"`` faster and different weights (our option).
    faithful : bool, default=False
        Reproduce quirks Q1 (encode with the batch's own hidden min/max) and Q2 (scalar
        output bias from the first output dimension) of the released code.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the batch computations; sums are accumulated and the L × L system is
        solved in float64 either way.
    batch_size : int, default=8192
        Rows per batch when :meth:`fit`, :meth:`encode`, :meth:`reconstruct` or
        :meth:`errors` stream over an in-memory array.
    check_finite : bool, default=True
        Reject NaN/inf inputs (one cheap pass per batch; switch off for inputs already
        validated, e.g. a :class:`~nfpf.core.selection.Pool`).
    n_jobs : int or None, default=None
        Batches :meth:`fit` and :meth:`errors` process side by side on CPU (threads).
        Each batch is computed single-threaded and the per-batch sums are added in batch
        order, so the numbers are the same for every ``n_jobs`` and every machine's core
        count. None: ``torch.get_num_threads()``. (:meth:`partial_fit`, the streaming
        entry point, and non-CPU devices use torch's own threads instead.)

    Attributes
    ----------
    state_ : SFLMState or None
        The fitted state (None before a fit): :meth:`export_state` gives a copy,
        :meth:`load_state` and :meth:`from_state` take one.
    input_weights_, bias_, beta_, output_bias_, hidden_min_, hidden_max_, target_min_, \
target_max_, n_samples_seen_
        Read-only views of the fields of ``state_`` (see :class:`SFLMState`).

    Notes
    -----
    Time: one pass of ``O(n·L·(d + L))`` (plus an ``O(n·d)`` range pass in type 0) and an
    ``O(L³)`` solve. Memory: ``O(L² + L·d + n_jobs·batch_size·(L + d))``, independent of
    n; the Gram matrix uses BLAS ``syrk`` (half the flops of a general product) on CPU.
    """

    def __init__(
        self,
        n_hidden: int = 1800,
        activation: str = "sigmoid",
        type: int = 1,  # the paper's name for the SFLM variant
        C: float = 1e-2,
        epochs: int = 1,
        input_weights: Any = None,
        bias: Any = None,
        random_state: int | np.random.Generator | None = None,
        faithful: bool = False,
        dtype: str = "float32",
        batch_size: int = 8192,
        check_finite: bool = True,
        n_jobs: int | None = None,
        orthonormalisation: str = "svd",
    ) -> None:
        _check_params(n_hidden, activation, type, C, epochs, dtype, batch_size, n_jobs,
                      orthonormalisation)
        self.n_hidden = int(n_hidden)
        self.activation = activation
        self.type = int(type)
        self.C = float(C)
        self.epochs = int(epochs)
        self.input_weights = input_weights
        self.bias = bias
        self.random_state = random_state
        self.faithful = bool(faithful)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.check_finite = bool(check_finite)
        self.n_jobs = None if n_jobs is None else int(n_jobs)
        self.orthonormalisation = orthonormalisation
        # a semaphore of cores shared with other single-threaded work beside the fit (set by
        # NFPF while its seeding runs); each CPU batch holds one slot. None: no limit
        self.cpu_slots: threading.Semaphore | None = None
        _check_explicit_weights(self.n_hidden, input_weights, bias)
        self.state_: SFLMState | None = None
        self._fit: _FitInProgress | None = None

    input_weights_ = _fitted("input_weights", "Tensor of shape (L, d): W.")
    bias_ = _fitted("bias", "Tensor of shape (L,): b.")
    beta_ = _fitted("beta", "Tensor of shape (L, d), float64: output weights.")
    output_bias_ = _fitted("output_bias", "Tensor of shape () or (d,), float64.")
    hidden_min_ = _fitted("hidden_min", "Tensor of shape (L,): hidden-unit minima.")
    hidden_max_ = _fitted("hidden_max", "Tensor of shape (L,): hidden-unit maxima.")
    target_min_ = _fitted("target_min", "Tensor of shape (d,): minima of x + 1e-7.")
    target_max_ = _fitted("target_max", "Tensor of shape (d,): maxima of x + 1e-7.")
    n_samples_seen_ = _fitted("n_samples_seen", "int: samples of the fit.")

    # ------------------------------------------------------------------ state
    def reset(self) -> SFLM:
        """Forget the fitted state and any fit under way (the next :meth:`partial_fit`
        starts a new fit); returns self."""
        self.state_ = None
        self._fit = None
        return self

    def export_state(self) -> SFLMState:
        """A copy of the fitted state (tensors cloned), e.g. to save or to send elsewhere.

        Raises
        ------
        RuntimeError
            Not fitted.
        """
        self._check_fitted()
        state = self.state_
        return replace(state, **{name: t.clone() for name, t in state.tensors().items()})

    def load_state(self, state: SFLMState) -> SFLM:
        """Take a fitted state (e.g. from :meth:`export_state`) as this SFLM's fit.

        The tensors are copied, ``input_weights`` and ``bias`` in this SFLM's ``dtype``, on
        the device they are on. The state must have been fitted with this SFLM's
        ``n_hidden``, ``activation``, ``type`` and ``dtype``; its other parameters (e.g.
        ``faithful``, which picks the default rescaling of :meth:`encode`) are this SFLM's.

        Parameters
        ----------
        state : SFLMState

        Returns
        -------
        self

        Raises
        ------
        ValueError
            The state's shapes disagree, or it was fitted with other parameters.
        """
        state.check()
        mine = {"n_hidden": self.n_hidden, "activation": self.activation, "type": self.type,
                "dtype": self.dtype}
        theirs = {"n_hidden": int(state.input_weights.shape[0]),
                  "activation": state.activation, "type": int(state.type),
                  "dtype": state.dtype}
        for key, value in mine.items():
            if theirs[key] != value:
                raise ValueError(f"the state was fitted with {key}={theirs[key]!r} but this "
                                 f"SFLM has {key}={value!r}; use SFLM.from_state(state).")
        compute = self._torch_dtype
        copies = {name: t.detach().to(torch.float64).clone()
                  for name, t in state.tensors().items()}
        copies["input_weights"] = state.input_weights.detach().to(compute).clone()
        copies["bias"] = state.bias.detach().to(compute).clone()
        self.reset()
        self.state_ = replace(state, **copies, n_samples_seen=int(state.n_samples_seen),
                              type=int(state.type))
        return self

    @classmethod
    def from_state(cls, state: SFLMState, **params: Any) -> SFLM:
        """A fitted SFLM built from ``state``: its ``n_hidden``, ``activation``, ``type``
        and ``dtype`` come from the state, ``params`` give the others (e.g. ``faithful``,
        ``batch_size``)."""
        state.check()
        return cls(n_hidden=int(state.input_weights.shape[0]), activation=state.activation,
                   type=int(state.type), dtype=state.dtype, **params).load_state(state)

    def pass_statistics(self) -> SFLMStats:
        """A copy of the sums the current pass has gathered (what :meth:`end_pass`
        all-reduces across processes).

        Raises
        ------
        RuntimeError
            No fit is under way.
        """
        if self._fit is None:
            raise RuntimeError("No fit is under way; call partial_fit() first.")
        stats = self._fit.stats
        return SFLMStats(**{name: _clone(getattr(stats, name)) for name in _STAT_FIELDS})

    @property
    def _torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def _device(self) -> torch.device:
        """Where the fit under way, or the fitted state, lives."""
        if self._fit is not None:
            return self._fit.device
        if self.state_ is not None:
            return self.state_.input_weights.device
        return torch.device("cpu")

    @property
    def n_passes(self) -> int:
        """Passes over the data a full fit needs (type 0 adds one min/max pass)."""
        return self.epochs + (1 if self.type == 0 else 0)

    @property
    def is_fitted(self) -> bool:
        return self.state_ is not None

    def _begin(self, d: int, device: torch.device) -> None:
        if self.input_weights is not None:
            w = np.asarray(self.input_weights, dtype=np.float64)
            if w.shape != (self.n_hidden, d):
                raise ValueError(f"input_weights has shape {w.shape} but the data has {d} "
                                 f"features; expected ({self.n_hidden}, {d}).")
        else:
            rng = self.random_state
            if not isinstance(rng, np.random.Generator):
                rng = np.random.default_rng(rng)
            w, b_drawn = draw_weights(self.n_hidden, d, rng, self.orthonormalisation)
        if self.bias is not None:
            b = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        elif self.input_weights is not None:
            rng = self.random_state
            if not isinstance(rng, np.random.Generator):
                rng = np.random.default_rng(rng)
            b = rng.uniform(0.0, 1.0, size=self.n_hidden)
            b /= np.linalg.norm(b)
        else:
            b = b_drawn
        self._fit = _FitInProgress(
            input_weights=torch.as_tensor(w, dtype=self._torch_dtype, device=device),
            bias=torch.as_tensor(b, dtype=self._torch_dtype, device=device),
            device=device, n_features=d, phase="range" if self.type == 0 else "sums")

    def _as_batch(self, X: Any) -> torch.Tensor:
        if isinstance(X, torch.Tensor):
            t = X.detach()
        else:
            a = np.ascontiguousarray(X)
            # read-only rows (np.load(mmap_mode="r")): copy the batch, torch needs writable
            t = torch.from_numpy(a if a.flags.writeable else a.copy())
        if t.ndim != 2:
            t = t.reshape(t.shape[0], -1)
        if not torch.is_floating_point(t):
            t = t.to(torch.float64)
        t = t.to(dtype=self._torch_dtype)
        if self.check_finite and not torch.isfinite(t).all():
            raise ValueError("SFLM input contains NaN or infinite values; remove or impute "
                             "those samples first.")
        return t

    # ---------------------------------------------------------------- fitting
    def fit(self, X: Any) -> SFLM:
        """Fit on an in-memory array, streaming over it in batches.

        Parameters
        ----------
        X : array-like or Tensor of shape (n, d)

        Returns
        -------
        self
        """
        X = _as_2d(X)
        if X.shape[0] < 1:
            raise ValueError("SFLM.fit needs at least one sample.")
        self.reset()
        starts = range(0, X.shape[0], self.batch_size)
        if isinstance(X, torch.Tensor) and X.device.type != "cpu":
            while True:
                for start in starts:
                    self.partial_fit(X[start:start + self.batch_size])
                if self.end_pass():
                    return self

        def batch_stats(start: int) -> SFLMStats:
            with self._cpu_slot():
                return self._batch_stats(self._as_batch(X[start:start + self.batch_size]))

        workers = self._workers()  # before single_threaded() sets torch's count to 1
        with single_threaded():
            while True:
                # the first batch draws the weights (first pass) and fixes the shifts
                self.partial_fit(X[:self.batch_size])
                for part in ordered_map(batch_stats, starts[1:], workers):
                    self._accumulate(part)
                if self.end_pass():
                    return self

    def _workers(self) -> int:
        return self.n_jobs if self.n_jobs is not None else torch.get_num_threads()

    def _cpu_slot(self) -> Any:
        """A core for one batch: the semaphore that the owner of this SFLM shares with other
        single-threaded work beside the fit (NFPF's seeding), or no limit. Only the timing
        changes: batches are added in order whoever computes them."""
        return self.cpu_slots if self.cpu_slots is not None else contextlib.nullcontext()

    def partial_fit(self, X: Any) -> SFLM:
        """Add one batch to the current pass (see :meth:`end_pass`).

        The first call (or the first after a completed fit) starts a new fit: weights are
        drawn (or taken from ``input_weights``/``bias``) and the statistics emptied. Feed
        every batch of the data, call :meth:`end_pass`, and repeat until it returns True
        (:attr:`n_passes` passes). :meth:`reset` abandons a fit under way.

        Parameters
        ----------
        X : array-like or Tensor of shape (batch, d)

        Returns
        -------
        self
        """
        if self._fit is None:
            self.reset()
            x0 = X if isinstance(X, torch.Tensor) else np.asarray(X)
            d = int(np.prod(x0.shape[1:]))
            device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
            self._begin(d, device)
        x = self._as_batch(X).to(self._device)
        if x.shape[0] > 0:
            self._accumulate(self._batch_stats(x))
        return self

    def _batch_stats(self, x: torch.Tensor) -> SFLMStats:
        """One batch's contribution to the current pass, around the fit's shifts.

        Sets the shifts from the batch when none are set yet (the first batch of a pass);
        otherwise only reads the fit's state, so batches can be computed side by side.
        """
        fit = self._fit
        if x.shape[1] != fit.n_features:
            raise ValueError(f"batch has {x.shape[1]} features; this fit started with "
                             f"{fit.n_features}.")
        st = fit.stats
        if self.type == 0:
            # type 0 targets go through asin, which amplifies rounding near ±1: build them
            # in float64 whatever the compute dtype
            raw_t = x.to(torch.float64) + TARGET_OFFSET
            lo, hi = raw_t.amin(0), raw_t.amax(0)
        else:
            # type 1 targets are affine in x: accumulate x itself around the shift 1e-7
            # (t - 1e-7 = x), no target copy needed
            lo, hi = (v.to(torch.float64) + TARGET_OFFSET for v in (x.amin(0), x.amax(0)))
        part = SFLMStats(n=x.shape[0], x_min=lo, x_max=hi)
        if fit.phase == "range":
            return part
        g = self._hidden_raw(x, fit.input_weights, fit.bias)
        part.h_min, part.h_max = g.amin(0).to(torch.float64), g.amax(0).to(torch.float64)
        t_final = self._inverse_targets(raw_t, fit.x_range) if self.type == 0 else None
        if st.shift_h is None:
            # shifts exactly representable in the compute dtype
            st.shift_h = g.mean(0).to(torch.float64)
            if t_final is not None:
                st.shift_t = t_final.mean(0).to(g.dtype).to(torch.float64)
            else:
                st.shift_t = torch.full((x.shape[1],), TARGET_OFFSET, dtype=torch.float64,
                                        device=x.device)
        part.shift_h, part.shift_t = st.shift_h, st.shift_t
        g -= st.shift_h.to(g.dtype)
        if t_final is not None:
            t = (t_final - st.shift_t).to(g.dtype)
        else:
            t = x  # = (x + 1e-7) - shift_t
        # in the compute dtype: _accumulate adds them to float64 sums (an exact widening),
        # and batches waiting to be added hold half the memory
        part.sum_h = g.sum(0)
        part.sum_t = t.sum(0)
        part.gram = gram(g)
        part.cross = g.T @ t
        return part

    def _accumulate(self, part: SFLMStats) -> None:
        """Add one batch's statistics (same shifts) to the current pass, in call order."""
        st = self._fit.stats
        if st.x_min is None:
            st.x_min, st.x_max = part.x_min, part.x_max
        else:
            st.x_min = torch.minimum(st.x_min, part.x_min)
            st.x_max = torch.maximum(st.x_max, part.x_max)
        st.n += part.n
        if part.sum_h is None:  # range pass
            return
        if st.sum_h is None:
            st.sum_h, st.sum_t, st.gram, st.cross = (
                v.to(torch.float64) for v in (part.sum_h, part.sum_t, part.gram, part.cross))
            st.h_min, st.h_max = part.h_min, part.h_max
        else:
            st.sum_h += part.sum_h  # float64 += compute dtype: widened exactly, then added
            st.sum_t += part.sum_t
            st.gram += part.gram
            st.cross += part.cross
            st.h_min = torch.minimum(st.h_min, part.h_min)
            st.h_max = torch.maximum(st.h_max, part.h_max)

    def end_pass(self, reducer: Reducer | None = None) -> bool:
        """Close the current pass; solve when the sums are complete.

        Parameters
        ----------
        reducer : Reducer, optional
            Combines the statistics across processes (distributed fits).

        Returns
        -------
        done : bool
            True when the fit is complete (:attr:`state_` holds it), False when another
            pass over the data is needed.
        """
        fit = self._fit
        if fit is None:
            raise RuntimeError("end_pass() called before any partial_fit() of this fit.")
        st = fit.stats
        if fit.phase == "range":
            if reducer is not None:
                st.x_min = reducer.all_reduce(st.x_min, "min")
                st.x_max = reducer.all_reduce(st.x_max, "max")
            fit.x_range = (st.x_min, st.x_max)
            fit.phase = "sums"
            fit.stats = SFLMStats()
            return False
        if reducer is not None:
            st.all_reduce(reducer)
        if st.n == 0:
            raise RuntimeError("SFLM pass ended without any sample.")
        beta, output_bias = self._solve(st)
        fit.epoch += 1
        if fit.epoch < self.epochs:
            scalar = output_bias if output_bias.ndim == 0 else output_bias.mean()
            fit.input_weights = beta.to(self._torch_dtype).clone()
            fit.bias = torch.full((self.n_hidden,), float(scalar), dtype=self._torch_dtype,
                                  device=fit.device)
            fit.stats = SFLMStats()
            return False
        self.state_ = SFLMState(
            input_weights=fit.input_weights, bias=fit.bias, beta=beta, output_bias=output_bias,
            hidden_min=st.h_min, hidden_max=st.h_max, target_min=st.x_min, target_max=st.x_max,
            n_samples_seen=int(st.n), activation=self.activation, type=self.type,
            dtype=self.dtype)
        self._fit = None
        return True

    def _solve(self, st: SFLMStats) -> tuple[torch.Tensor, torch.Tensor]:
        """β and the output bias from one pass's complete sums."""
        n = float(st.n)
        h = _to_unit_range(st.h_min, st.h_max, st.shift_h)
        if self.type == 1:
            t = _to_unit_range(st.x_min, st.x_max, st.shift_t)
        else:  # the targets were accumulated in their final form
            t = _Affine(scale=torch.ones_like(st.shift_t), offset=st.shift_t.clone())
        sh = h.scale * st.sum_h
        su = t.scale * st.sum_t
        hth = (h.scale[:, None] * st.gram * h.scale[None, :]
               + torch.outer(sh, h.offset) + torch.outer(h.offset, sh)
               + n * torch.outer(h.offset, h.offset))
        htt = (h.scale[:, None] * st.cross * t.scale[None, :]
               + torch.outer(sh, t.offset) + torch.outer(h.offset, su)
               + n * torch.outer(h.offset, t.offset))
        hth = 0.5 * (hth + hth.T)
        hth.diagonal().add_(1.0 / self.C)
        chol, info = torch.linalg.cholesky_ex(hth)
        if int(info) == 0:
            beta = torch.cholesky_solve(htt, chol)
        else:  # not expected (the matrix is SPD by construction); be robust to rounding
            beta = torch.linalg.solve(hth, htt)
        mean_h = sh / n + h.offset
        mean_t = su / n + t.offset
        resid = mean_h @ beta - mean_t  # mean of (Hβ - T) per output dimension
        return beta, resid[0].clone() if self.faithful else resid

    def _hidden_raw(self, x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor
                    ) -> torch.Tensor:
        """Raw hidden layer g(X Wᵀ - b) (type 1) or X Wᵀ - b (type 0), before rescaling."""
        z = torch.addmm(bias, x, weights.T, alpha=1.0, beta=-1.0)
        if self.type == 1:
            if self.activation == "sigmoid":
                torch.sigmoid_(z)
            else:
                torch.sin_(z)
        return z

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_hidden_raw` with the fitted weights."""
        return self._hidden_raw(x, self.state_.input_weights, self.state_.bias)

    @staticmethod
    def _inverse_targets(raw_t: torch.Tensor, x_range: tuple[torch.Tensor, torch.Tensor]
                         ) -> torch.Tensor:
        lo, hi = x_range
        aff = _to_unit_range(lo, hi, 0.0)
        t = raw_t * aff.scale + aff.offset
        return torch.asin(t.clamp_(-1.0, 1.0))  # sine is the only type-0 activation

    def targets(self, X: Any) -> torch.Tensor:
        """The fitting targets T of X under the fitted target rescaling (float64).

        Parameters
        ----------
        X : array-like of shape (n, d)

        Returns
        -------
        T : Tensor of shape (n, d)
            ``x + 1e-7`` rescaled to [-1, 1] per dimension with the fit's min/max, and
            ``asin`` of that in type 0.
        """
        self._check_fitted()
        raw_t = self._as_batch(_as_2d(X)).to(self._device).to(torch.float64) + TARGET_OFFSET
        aff = _to_unit_range(self.state_.target_min, self.state_.target_max, 0.0)
        t = raw_t * aff.scale + aff.offset
        return torch.asin(t.clamp_(-1.0, 1.0)) if self.type == 0 else t

    # --------------------------------------------------------------- encoding
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("This SFLM is not fitted yet; call fit() first.")

    def _resolve_rescale(self, rescale: str | None) -> str:
        if rescale is None:
            return "batch" if self.faithful else "fit"
        if rescale not in ("fit", "batch"):
            raise ValueError(f"rescale must be 'fit', 'batch' or None; got {rescale!r}.")
        return rescale

    def _hidden_affine(self, X: Any, rows: np.ndarray | None, rescale: str) -> _Affine:
        if rescale == "fit":
            lo, hi = self.state_.hidden_min, self.state_.hidden_max
        else:  # Q1: min/max of the batch being encoded (all of X / X[rows])
            lo = hi = None
            for x in self._batches(X, rows):
                g = self._hidden(x)
                glo, ghi = g.amin(0).to(torch.float64), g.amax(0).to(torch.float64)
                lo = glo if lo is None else torch.minimum(lo, glo)
                hi = ghi if hi is None else torch.maximum(hi, ghi)
        return _to_unit_range(lo, hi, 0.0)

    def _batches(self, X: Any, rows: np.ndarray | None):
        for sl in self._slices(X, rows):
            yield self._batch(X, rows, sl)

    def _slices(self, X: Any, rows: np.ndarray | None) -> list[slice]:
        n = X.shape[0] if rows is None else len(rows)
        return [slice(start, start + self.batch_size) for start in range(0, n, self.batch_size)]

    def _batch(self, X: Any, rows: np.ndarray | None, sl: slice) -> torch.Tensor:
        return self._as_batch(X[sl] if rows is None else X[rows[sl]]).to(self._device)

    def _decode(self, g: torch.Tensor, h: _Affine) -> torch.Tensor:
        """Reconstruction from raw hidden values ``g`` under hidden rescaling ``h``."""
        state = self.state_
        dt = g.dtype
        w = h.scale[:, None] * state.beta  # hidden rescaling folded into β
        c = h.offset @ state.beta - state.output_bias
        out = _to_unit_range(state.target_min, state.target_max, 0.0)
        if self.type == 1:  # linear decoder: fold the inverse target rescaling in as well
            w = w / out.scale
            c = (c - out.offset) / out.scale
            return torch.addmm(c.to(dt), g, w.to(dt))
        y = torch.addmm(c.to(dt), g, w.to(dt))
        torch.sin_(y)
        y -= out.offset.to(dt)  # inverse of y = scale * x + offset
        y /= out.scale.to(dt)
        return y

    def encode(self, X: Any, rescale: str | None = None) -> torch.Tensor:
        """Hidden representation H rescaled to [-1, 1] per hidden unit.

        Parameters
        ----------
        X : array-like of shape (n, d)
        rescale : {"fit", "batch"}, optional
            Min/max used to rescale hidden units: the fit's (default) or those of X taken as
            one batch (quirk Q1; the default when ``faithful=True``).

        Returns
        -------
        H : Tensor of shape (n, L)
        """
        self._check_fitted()
        X = _as_2d(X)
        h = self._hidden_affine(X, None, self._resolve_rescale(rescale))
        parts = []
        for x in self._batches(X, None):
            g = self._hidden(x)
            parts.append(g * h.scale.to(g.dtype) + h.offset.to(g.dtype))
        return torch.cat(parts)

    def reconstruct(
        self, X: Any, rescale: str | None = None, rows: np.ndarray | None = None
    ) -> torch.Tensor:
        """Reconstruction X̂ in the input scale.

        Parameters
        ----------
        X : array-like of shape (n, d)
        rescale : {"fit", "batch"}, optional
            See :meth:`encode`.
        rows : ndarray of int, optional
            Encode only ``X[rows]`` (without copying X).

        Returns
        -------
        X_hat : Tensor of shape (n or len(rows), d)
        """
        self._check_fitted()
        X = _as_2d(X)
        h = self._hidden_affine(X, rows, self._resolve_rescale(rescale))
        return torch.cat([self._decode(self._hidden(x), h) for x in self._batches(X, rows)])

    def errors(
        self,
        X: Any,
        kind: str = "mse",
        rescale: str | None = None,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-sample reconstruction error, streamed (X̂ is never held for all of X).

        Parameters
        ----------
        X : array-like of shape (n, d)
        kind : {"mse", "pearson"}
            Mean squared error over dimensions, or 1 - Pearson(x, x̂).
        rescale : {"fit", "batch"}, optional
            See :meth:`encode`.
        rows : ndarray of int, optional
            Score only ``X[rows]``.

        Returns
        -------
        errors : ndarray of shape (n or len(rows),), float64
        """
        from nfpf.method.rd import per_sample_error

        self._check_fitted()
        X = _as_2d(X)
        rescale = self._resolve_rescale(rescale)
        if kind not in ("mse", "pearson"):
            raise ValueError(f"kind must be 'mse' or 'pearson'; got {kind!r}.")

        def batch_errors(sl: slice) -> np.ndarray:
            with self._cpu_slot():
                x = self._batch(X, rows, sl)
                y = self._decode(self._hidden(x), h)
                if kind == "mse":  # in place on the reconstruction: no extra n x d buffer
                    y -= x
                    err = torch.linalg.vector_norm(y, dim=1, dtype=torch.float64) ** 2
                    return (err / y.shape[1]).cpu().numpy()
                return per_sample_error(x, y, kind)

        slices = self._slices(X, rows)
        if self._device.type != "cpu":
            h = self._hidden_affine(X, rows, rescale)
            out = [batch_errors(sl) for sl in slices]
        else:  # batches side by side, each single-threaded: see ``n_jobs``
            workers = self._workers()  # before single_threaded() sets torch's count to 1
            with single_threaded():
                h = self._hidden_affine(X, rows, rescale)
                out = list(ordered_map(batch_errors, slices, workers))
        return np.concatenate(out) if out else np.zeros(0)


def check_variant(activation: Any, type: Any, activation_name: str = "activation",
                  type_name: str = "type") -> None:
    """Raise a one-line ``ValueError`` unless ``activation`` and ``type`` name an SFLM variant
    (the names: the parameters as the caller's user writes them, e.g. ``"ref_type"``)."""
    check_choice(activation_name, activation, ACTIVATIONS)
    check_count(type_name, type, 0, 1, hint=" (0: linear encoder, activated decoder; 1: "
                                            "activated encoder, linear decoder)")
    if as_count(type) == 0 and activation == "sigmoid":
        raise ValueError(
            f"{type_name}=0 with {activation_name}='sigmoid' is undefined: type 0 fits the "
            f"decoder to the inverse activation of targets rescaled to [-1, 1], and logit is "
            f"undefined on [-1, 0]. Use {type_name}=1 with 'sigmoid', or "
            f"{activation_name}='sine' with {type_name}=0.")


def _check_params(n_hidden: Any, activation: Any, type: Any, C: Any, epochs: Any, dtype: Any,
                  batch_size: Any, n_jobs: Any, orthonormalisation: Any) -> None:
    """Validate the SFLM's scalar parameters; one line naming the key and what it takes."""
    check_count("n_hidden", n_hidden)
    check_variant(activation, type)
    check_param("C", C, Real, low=0, closed="neither", hint=" (the regularisation is 1/C)")
    check_count("epochs", epochs)
    check_choice("dtype", dtype, DTYPES)
    check_count("batch_size", batch_size)
    check_count("n_jobs", n_jobs, also=(None,), hint=" (None: torch's thread count)")
    check_choice("orthonormalisation", orthonormalisation, ORTHONORMALISATIONS)


def _check_explicit_weights(n_hidden: int, input_weights: Any, bias: Any) -> None:
    """Reject explicit weights or bias whose shape does not match L = ``n_hidden``."""
    if input_weights is not None:
        w = np.asarray(input_weights)
        if w.ndim != 2 or w.shape[0] != n_hidden:
            raise ValueError(f"input_weights must have shape (n_hidden={n_hidden}, d); "
                             f"got {w.shape}.")
    if bias is not None:
        b = np.asarray(bias)
        if b.size != n_hidden or b.ndim > 2:
            raise ValueError(f"bias must have shape ({n_hidden},) or ({n_hidden}, 1); "
                             f"got {b.shape}.")


def _as_2d(X: Any) -> Any:
    if isinstance(X, torch.Tensor):
        return X.reshape(X.shape[0], -1) if X.ndim != 2 else X
    if isinstance(X, FloatRows):  # read batch by batch, never copied whole
        return X
    X = np.asarray(X)
    if X.ndim == 1:
        raise ValueError(f"SFLM expects a 2-D array (n_samples, n_features); got shape "
                         f"{X.shape}. Use X.reshape(1, -1) for one sample.")
    return X.reshape(X.shape[0], -1) if X.ndim != 2 else X


def gram(g: torch.Tensor) -> torch.Tensor:
    """gᵀg; on CPU through numpy, whose matmul calls BLAS syrk for ``a.T @ a``."""
    if g.device.type == "cpu":
        a = g.numpy()
        return torch.from_numpy(a.T @ a)
    return g.T @ g
