"""The selection interface shared by NFPF and every baseline.

A selector sees a :class:`Pool` -- the unlabeled pool's features and, for methods that work on
pixels, its images -- and a budget, and returns that many distinct indices into the pool.
:class:`Pool` has no field for labels, so no selector can read them: labels live in
:class:`nfpf.data.Dataset` and only :mod:`nfpf.evaluation.evaluate` reads them, after selection.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_scalar

from nfpf.core import device as nfpf_device
from nfpf.core.protocol import (
    LABEL_FREE,
    RANKING,
    SelectionPlan,
    SelectionRequest,
    SelectionResult,
    kind_of,
)

__all__ = [
    "MAX_SEED",
    "Pool",
    "RankingSelector",
    "Selector",
    "SubsetSelector",
    "as_pool",
    "as_whole",
    "candidate_subset",
    "candidate_subset_size",
    "check_budget",
    "check_choice",
    "check_indices",
    "check_param",
    "check_seed",
    "check_whole",
    "select_on_subset",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pool:
    """The unlabeled pool, as a selector sees it.

    Parameters
    ----------
    features : ndarray of shape (n, d)
        One feature vector per sample (raw pixels, PCA, an embedding, ...). Must be finite.
    images : ndarray of shape (n, *image_shape), optional
        The samples' pixels scaled to [0, 1] (vector datasets: the raw vectors scaled to
        [0, 1]). Selectors that model pixels (NFPF's SFLM) read these; others ignore them.
    n_classes : int, optional
        The number of classes, a count and never a label. Published defaults of several
        methods use it (NFPF's and ProbCover's K-means use K = number of classes).
    """

    features: np.ndarray
    images: np.ndarray | None = None
    n_classes: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        features = np.asarray(self.features)
        if features.ndim != 2:
            raise ValueError(
                f"Pool features must be a 2-D array (n_samples, n_features); got shape "
                f"{features.shape}. Flatten images first, e.g. X.reshape(len(X), -1)."
            )
        if features.shape[0] == 0:
            raise ValueError("The pool is empty: there is nothing to select from.")
        if not np.issubdtype(features.dtype, np.floating):
            features = features.astype(np.float32)
        _check_finite(features, "features")
        object.__setattr__(self, "features", features)
        if self.images is not None:
            images = np.asarray(self.images)
            if images.shape[0] != features.shape[0]:
                raise ValueError(
                    f"Pool images have {images.shape[0]} rows but features have "
                    f"{features.shape[0]}; both must describe the same samples."
                )
            _check_finite(images, "images")
            object.__setattr__(self, "images", images)
        object.__setattr__(self, "n_classes",
                           check_whole("n_classes", self.n_classes, low=1, also=(None,)))

    @property
    def n(self) -> int:
        """Number of samples in the pool."""
        return int(self.features.shape[0])

    def pixels(self) -> np.ndarray:
        """Flattened pixels scaled to [-1, 1], shape (n, prod(image_shape)).

        Falls back to the features when the pool carries no images.
        """
        if self.images is None:
            return np.asarray(self.features, dtype=np.float32)
        flat = self.images.reshape(self.n, -1)
        if not flat.flags.writeable:  # read-only memmap: torch cannot wrap it
            out = np.multiply(flat, 2.0, dtype=np.float32)  # one pool-sized array
            out -= 1.0
            return out
        import torch

        # torch's multi-threaded kernels: the same two roundings as numpy (x·2 is exact),
        # 5x faster on a 60,000 x 784 pool; one pool-sized array, no temporary
        out = torch.from_numpy(flat).to(torch.float32, copy=True)
        return out.mul_(2.0).sub_(1.0).numpy()


def _check_finite(array: np.ndarray, what: str, chunk_rows: int = 65536) -> None:
    """Raise if any entry is NaN or infinite; reads ``array`` in row chunks (memmap-friendly)."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    flat = array.reshape(len(array), -1)
    bad_rows: list[np.ndarray] = []
    for start in range(0, len(flat), chunk_rows):
        block = flat[start:start + chunk_rows]
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            bad_rows.append(start + np.flatnonzero(~finite))
    if bad_rows:
        rows = np.concatenate(bad_rows)
        raise ValueError(
            f"Pool {what} contain NaN or infinite values in {rows.size} row(s) "
            f"(first: {rows[:5].tolist()}). Remove those samples or impute the values "
            f"before selecting."
        )


def as_pool(pool: Pool | np.ndarray, n_classes: int | None = None) -> Pool:
    """Return ``pool`` as a :class:`Pool`; a bare array becomes the pool's features."""
    if isinstance(pool, Pool):
        return pool
    return Pool(features=np.asarray(pool), n_classes=n_classes)


#: The largest seed: what every random generator of the selectors accepts (numpy's legacy
#: ``RandomState`` and scikit-learn's ``random_state`` stop at 2**32 - 1).
MAX_SEED = 2**32 - 1

# ----------------------------------------------------------------------------- checks
# One validator per kind of value, each raising a one-line ValueError that names the key:
# a whole number entering from a config, a command line or a caller (check_whole, and its
# two special cases check_seed and check_budget), a selector's numeric parameter stored as
# given (check_param), and one value of a set (check_choice).


def as_whole(value: Any) -> int | None:
    """``value`` as an ``int`` when it is a whole number, else None.

    The one rule of what a whole number is: an integer (``3``, ``np.int64(3)``), or a float or
    a string holding one (``3.0``, ``"3"``: YAML files and command lines write them so); never
    a bool, NaN or an infinity.
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not number.is_integer():  # also False for NaN and the infinities
        return None
    return int(number)


_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def _allowed_range(what: str, low: Real | None, high: Real | None, closed: str) -> str:
    """Words for an accepted range, e.g. "an integer >= 1" or "a whole number from 0 to 9"."""
    left, right = _BRACKETS[closed]
    if low is not None and high is not None:
        if what == "a whole number" and closed == "both":
            return f"{what} from {low} to {high}"
        return f"{what} in {left}{low}, {high}{right}"
    if low is not None:
        return f"{what} {'>=' if left == '[' else '>'} {low}"
    if high is not None:
        return f"{what} {'<=' if right == ']' else '<'} {high}"
    return "a finite number" if what == "a number" else what


def _is_one_of(value: Any, others: Collection) -> bool:
    """Whether ``value`` is one of ``others`` (by identity, or equal as a string)."""
    return any(value is other or (isinstance(value, str) and value == other)
               for other in others)


def check_whole(name: str, value: Any, *, low: int | None = None, high: int | None = None,
                also: Collection = (), hint: str = "", fix: str = "") -> Any:
    """Validate a whole number (:func:`as_whole`) within ``[low, high]``; return it as ``int``.

    For counts and sizes that enter from a config, a command line or a caller (a pool's
    number of classes, numbers of clusters or neighbours, image sizes, label budgets,
    decoding threads), checked where they enter.

    Parameters
    ----------
    name : str
        The key, as the user writes it (e.g. ``"n_clusters"``, ``"num_workers"``).
    value : object
    low, high : int, optional
        Inclusive bounds.
    also : collection
        Other accepted values, returned unchanged (e.g. ``(None,)``), named in the message.
    hint : str
        Words appended to the accepted range, e.g. ``" (the pool size)"``.
    fix : str
        A sentence appended to the message, e.g. ``"Use e.g. seed=0."``.

    Returns
    -------
    int, or ``value`` itself when it is one of ``also``.

    Raises
    ------
    ValueError
        One line: ``"<name> must be a whole number ...; got <value>."``.
    """
    if _is_one_of(value, also):
        return value
    whole = as_whole(value)
    if whole is None or (low is not None and whole < low) or (high is not None and whole > high):
        allowed = " or ".join([_allowed_range("a whole number", low, high, "both"),
                               *(repr(other) for other in also)])
        raise ValueError(f"{name} must be {allowed}{hint}; got {value!r}."
                         + (f" {fix}" if fix else ""))
    return whole


def check_seed(seed: Any) -> int:
    """Validate a selection seed and return it as ``int``: a whole number in
    ``[0, MAX_SEED]``.

    The one rule for every selector, :func:`nfpf.select`, ``nfpf-run`` and ``nfpf-select``,
    checked before any work.
    """
    return check_whole("seed", seed, low=0, high=MAX_SEED, fix="Use e.g. seed=0.")


def check_budget(budget: Any, n: int | None, name: str = "budget") -> int:
    """Validate a budget against a pool of ``n`` samples (``None``: no pool yet) and return
    it as ``int`` (``name``: the option the value came from, for the error message)."""
    value = check_whole(name, budget, hint=f" of samples, e.g. {name}=10")
    if value <= 0:
        raise ValueError(f"{name} must be at least 1; got {value}.")
    if n is not None and value > n:
        raise ValueError(
            f"budget={value} is larger than the pool ({n} samples). Choose a budget of at "
            f"most {n}, or use a larger pool."
        )
    return value


def check_indices(indices: Any, budget: int, n: int, who: str = "selector") -> np.ndarray:
    """Check that ``indices`` are ``budget`` distinct integers in ``[0, n)``."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise RuntimeError(f"{who} returned {indices.dtype} array of shape {indices.shape}; "
                           f"expected a 1-D integer array.")
    indices = indices.astype(np.int64, copy=False)
    if indices.size != budget:
        raise RuntimeError(f"{who} returned {indices.size} indices; the budget is {budget}.")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise RuntimeError(f"{who} returned indices outside [0, {n}).")
    if np.unique(indices).size != indices.size:
        raise RuntimeError(f"{who} returned repeated indices.")
    return indices


def check_param(name: str, value: Any, kind: type = Integral, *, low: Real | None = None,
                high: Real | None = None, closed: str = "both", also: Collection = (),
                hint: str = "") -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is a ``kind`` within the bounds.

    For a selector's numeric constructor parameters, which are stored as given (scikit-learn's
    contract) and so must already have their type: the type and range are checked by
    :func:`sklearn.utils.check_scalar`; a bool is neither an integer nor a number here, and a
    number must be finite.

    Parameters
    ----------
    name : str
        The option, as the user writes it (e.g. ``"n_init"`` or ``"selector.rounds"``).
    value : object
        Its value, left unchanged (scikit-learn stores constructor parameters as given).
    kind : {numbers.Integral, numbers.Real}
    low, high : number, optional
        Bounds; ``closed`` (``"both"``, ``"left"``, ``"right"``, ``"neither"``) says which
        of them are allowed values.
    also : collection
        Other accepted values (e.g. ``(None,)`` or ``("auto",)``), named in the message.
    hint : str
        Words appended to the allowed range, e.g. ``" (None: never subsample)"``.
    """
    if _is_one_of(value, also):
        return
    try:
        if isinstance(value, bool | np.bool_):
            raise TypeError(name)
        check_scalar(value, name, kind, min_val=low, max_val=high, include_boundaries=closed)
        if not math.isfinite(value):
            raise ValueError(name)
    except (TypeError, ValueError):
        what = "an integer" if kind is Integral else "a number"
        allowed = " or ".join([_allowed_range(what, low, high, closed),
                               *(repr(other) for other in also)])
        raise ValueError(f"{name} must be {allowed}{hint}; got {value!r}.") from None


def check_choice(name: str, value: Any, choices: Collection, hint: str = "") -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is one of ``choices``."""
    if not _is_one_of(value, choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}{hint}; "
                         f"got {value!r}.")


class Selector(BaseEstimator, ABC):
    """Base class of every selection method: a scikit-learn estimator.

    Subclasses take their parameters in ``__init__`` and store each one unchanged under its
    own name (scikit-learn's contract, so that ``get_params``, ``set_params``,
    :func:`sklearn.base.clone` and the ``repr`` work), check them in :meth:`check_params`
    (called by ``__init__`` and again by :meth:`select`, so bad input is refused before any
    work, also after ``set_params``) and implement :meth:`_select`. Callers use
    :meth:`select`, which validates the pool and the budget before any work and the returned
    indices after it.

    After :meth:`select`, ``info_`` holds a small JSON-serialisable dict about the last
    selection (e.g. that a candidate subset was used) and ``history_`` a list of per-round
    records for progressive methods (empty for one-shot ones).

    Its kind (:mod:`nfpf.core.protocol`) is ``label_free``: it sees the pool only.
    """

    #: The kind of selector (:mod:`nfpf.core.protocol`): label-free, it sees the pool only.
    kind: ClassVar[str] = LABEL_FREE.name
    #: Whether the method reads ``pool.images`` (documentation and validation only).
    uses_images: ClassVar[bool] = False

    info_: dict[str, Any]
    history_: list[dict[str, Any]]

    def plan_selection(self, n: int, budget: int, seed: int = 0,
                       model: Any = None) -> SelectionPlan:
        """The bad-input errors of a selection of ``budget`` from ``n`` samples, before any
        work, and its :class:`~nfpf.core.protocol.SelectionPlan` (no labels, ``budget``
        picks; ``model`` is not used)."""
        self.check_params()
        check_seed(seed)
        budget = check_budget(budget, n)
        return SelectionPlan(kind_of(self), labels=0, picks=budget, budget_key=budget)

    def run_selection(self, request: SelectionRequest) -> SelectionResult:
        """:meth:`select` on the request's pool, budget and seed, with ``info_`` and
        ``history_``."""
        indices = self.select(request.pool, request.budget, seed=request.seed)
        return SelectionResult(indices, info=self.info_, history=self.history_)

    def select(self, pool: Pool | np.ndarray, budget: int, *, seed: int = 0) -> np.ndarray:
        """Choose ``budget`` samples of ``pool`` to label.

        Parameters
        ----------
        pool : Pool or ndarray of shape (n, d)
            The unlabeled pool (a bare array is taken as its features).
        budget : int
            Number of samples to select, 1 <= budget <= n.
        seed : int
            Seed of the selection's random generator, from 0 to :data:`MAX_SEED`
            (:func:`check_seed`); the same seed gives the same indices.

        Returns
        -------
        indices : ndarray of shape (budget,), int64
            Distinct indices into the pool, in the order the method chose them.
        """
        seed, pool, budget = self._start(pool, budget, seed)
        indices = self._select(pool, budget, seed)
        return check_indices(indices, budget, pool.n, who=type(self).__name__)

    def check_params(self) -> None:
        """Raise a one-line ``ValueError`` naming the first bad parameter (none here)."""

    def _start(self, pool: Pool | np.ndarray, budget: Any, seed: Any) -> tuple[int, Pool, int]:
        """Check the parameters, the seed, the pool and the budget; reset ``info_`` and
        ``history_``."""
        self.check_params()
        seed = check_seed(seed)
        pool = as_pool(pool)
        budget = check_budget(budget, pool.n)
        self.info_ = {}
        self.history_ = []
        return seed, pool, budget

    @abstractmethod
    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        """Return ``budget`` distinct indices into ``pool`` (validated by :meth:`select`)."""


class RankingSelector(Selector):
    """A selector whose picks are the best ``budget`` entries of a ranking of the pool.

    Score-then-top-B methods (DUAL, ALMS) rank the whole pool (or a candidate subset) once;
    the budget only cuts the ranking. They implement :meth:`_rank` and say in
    :meth:`ranking_key` what, besides the pool and the seed, the ranking depends on, so that
    a sweep over budgets trains them once per seed: :func:`nfpf.evaluation.pipeline.run`
    caches the ranking under that key and cuts it for every budget. ``select(pool, B)`` is
    always ``rank(pool, B)[:B]``. Its kind is ``ranking``.
    """

    kind: ClassVar[str] = RANKING.name

    def plan_selection(self, n: int, budget: int, seed: int = 0,
                       model: Any = None) -> SelectionPlan:
        """As :meth:`Selector.plan_selection`, the budget key being the :meth:`ranking_key`:
        budgets of equal keys share one ranking."""
        plan = super().plan_selection(n, budget, seed, model)
        return dataclasses.replace(plan, budget_key={"ranking": self.ranking_key(n, plan.picks)})

    def run_selection(self, request: SelectionRequest) -> SelectionResult:
        """:meth:`rank` on the request; the picks are its first ``budget`` entries."""
        ranking = self.rank(request.pool, request.budget, seed=request.seed)
        return SelectionResult(ranking[:request.budget], ranking=ranking, info=self.info_,
                               history=self.history_)

    def rank(self, pool: Pool | np.ndarray, budget: int, *, seed: int = 0) -> np.ndarray:
        """The method's ranking of the pool, best first.

        Parameters
        ----------
        pool : Pool or ndarray of shape (n, d)
        budget : int
            The budget the ranking must cover (it matters only when it changes what is
            ranked, e.g. a candidate subset never smaller than the budget).
        seed : int

        Returns
        -------
        ranking : ndarray of shape (m,), int64
            Distinct pool indices, ``budget <= m <= n``, best first.
        """
        seed, pool, budget = self._start(pool, budget, seed)
        ranking = np.asarray(self._rank(pool, budget, seed), dtype=np.int64)
        if ranking.size < budget:
            raise RuntimeError(f"{type(self).__name__} ranked {ranking.size} samples, fewer "
                               f"than the budget {budget}.")
        return check_indices(ranking, ranking.size, pool.n, who=type(self).__name__)

    def ranking_key(self, n: int, budget: int) -> int | None:
        """What the ranking depends on besides the pool, the seed and the parameters.

        ``None`` (the default) when the budget does not change it; subclasses return e.g.
        the size of the candidate subset they rank. Two budgets with equal keys share a
        ranking.
        """
        return None

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        return self._rank(pool, budget, seed)[:budget]

    @abstractmethod
    def _rank(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        """Return distinct indices into ``pool``, best first, at least ``budget`` of them."""


def candidate_subset_size(n: int, budget: int, max_candidates: int | None) -> int:
    """How many samples :func:`candidate_subset` keeps (``n`` when it keeps them all)."""
    if max_candidates is None or n <= max_candidates:
        return int(n)
    return int(min(n, max(int(max_candidates), int(budget))))


def candidate_subset(n: int, budget: int, max_candidates: int | None, seed: int,
                     who: str) -> np.ndarray | None:
    """The seeded candidate subset a method bounded by ``max_candidates`` works on.

    Returns ``None`` when the whole pool fits (``max_candidates`` is None or n <= it);
    otherwise sorted distinct indices of ``max(max_candidates, budget)`` samples drawn
    uniformly without replacement by ``np.random.default_rng(seed)``, and logs that it did.
    The subset is never smaller than the budget, so exactly ``budget`` picks always exist.
    """
    size = candidate_subset_size(n, budget, max_candidates)
    if size >= n:
        return None
    subset = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    log.info("%s: the pool has %d samples, more than max_candidates=%d; selecting from a "
             "seeded random candidate subset of %d samples.", who, n, max_candidates, size)
    return subset.astype(np.int64)


def select_on_subset(pool: Pool, budget: int, seed: int, max_candidates: int | None,
                     who: str, select: Callable[[Pool, int, int], np.ndarray],
                     ) -> tuple[np.ndarray, int | None]:
    """Run ``select(pool, budget, seed)`` on the seeded candidate subset, mapped back.

    Returns the picks as pool indices and the subset size (``None``: the whole pool was
    used, and ``select`` saw ``pool`` itself).
    """
    subset = candidate_subset(pool.n, budget, max_candidates, seed, who)
    if subset is None:
        return select(pool, budget, seed), None
    sub = Pool(np.asarray(pool.features[subset]), n_classes=pool.n_classes)
    return subset[select(sub, budget, seed)], int(subset.size)


class SubsetSelector(Selector):
    """A selector with the options ``max_candidates`` and ``device``: it runs on the seeded
    candidate subset (:func:`select_on_subset`) on the computing device.

    Subclasses implement :meth:`_select_all`, the method on a pool that fits. ``info_``
    records ``candidate_subset`` (its size, or None) and, on a GPU, ``device``.
    """

    max_candidates: int | None
    device: str
    #: The option to lower when the GPU runs out of memory.
    memory_option: ClassVar[str] = "selector.chunk_size"

    def check_params(self) -> None:
        check_param("max_candidates", self.max_candidates, low=1, also=(None,),
                    hint=" (None: never subsample)")
        nfpf_device.check_device(self.device)

    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        gpu = nfpf_device.compute_device(self.device)
        who = type(self).__name__.lower()
        with nfpf_device.gpu_memory_guard(who, self.memory_option):
            picks, size = select_on_subset(pool, budget, seed, self.max_candidates, who,
                                           functools.partial(self._select_all, gpu=gpu))
        self.info_["candidate_subset"] = size
        if gpu is not None:
            self.info_["device"] = str(gpu)
        return picks

    @abstractmethod
    def _select_all(self, pool: Pool, budget: int, seed: int, gpu: Any = None) -> np.ndarray:
        """Return ``budget`` distinct indices into ``pool``, computing on ``gpu`` (a torch
        device) or, when None, on the CPU."""
