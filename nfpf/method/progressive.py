"""NFPF (Natural Feature Progressive Framework) behind the common selector interface.

A reference SFLM fitted once on the whole pool gives every sample's reconstruction error;
initial seeds are chosen by K-means (or at random); then rounds of "fit the current SFLM on
the selection, score a random candidate pool with the Reconstruction Difference, move the k
best" grow the selection to exactly B samples (Liu, Lalman and Yang, 2025). Every constant
of the authors' released code is a parameter with that default. See docs/nfpf.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_memory

from nfpf.core import device as nfpf_device
from nfpf.core.memo import Memo
from nfpf.core.resources import release_free_memory, single_threaded, single_threaded_worker
from nfpf.core.selection import Pool, Selector, check_choice, check_param
from nfpf.method.checks import as_count, check_count, check_flag
from nfpf.method.rd import SCORES, minmax_normalise, per_sample_error, rd_scores
from nfpf.method.rows import FloatRows, PixelRows, column_mean, device_rows, is_file_backed
from nfpf.method.seeding import kmeans_distances, margin_key, pca_features, per_cluster_seeds
from nfpf.method.sflm import DTYPES, ORTHONORMALISATIONS, SFLM, check_variant, draw_weights

__all__ = ["NFPF", "SEEDINGS", "SEED_FEATURES", "Execution", "RandomStreams", "SelectionState"]

logger = logging.getLogger(__name__)

SEEDINGS = ("kmeans_margin", "kmeans_center", "kmeans_rd", "random")
SEED_FEATURES = ("features", "pixels", "pca")
SFLM_INPUTS = ("pixels", "features")
REF_NORMALISATIONS = ("candidates", "pool")
FAITHFUL_SEED = 42  # quirk Q3: the released code resets every global seed to 42
FALLBACK_CLUSTERS = 10
STREAM_MODES = (True, False, "auto")
PROGRESS_MODES = (True, False, None)
CHECK_ROWS = 8192  # rows per batch of the constant-pool check and the empty-model errors


@dataclass(frozen=True)
class Execution:
    """How an NFPF selection computes, apart from what it computes.

    None of these is part of the method: the picks are the same for every ``batch_size``,
    ``progress``, ``stream``, ``n_jobs`` and ``memory``; ``dtype`` and ``device`` change
    the arithmetic's rounding only (see docs/nfpf.md). The selectors take them as flat,
    keyword-only parameters (scikit-learn's convention for ``n_jobs``, ``memory`` and
    ``verbose``, and the project's for ``device`` and ``batch_size``); this object is their
    one validated home.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default="float32"
    batch_size : int, default=8192
    progress : bool or None, default=None
    stream : {"auto", True, False}, default="auto"
    n_jobs : int or None, default=None
    memory : str, joblib.Memory or None, default=None
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"

    Raises
    ------
    ValueError
        A knob out of its range, naming it.
    """

    dtype: str = "float32"
    batch_size: int = 8192
    progress: bool | None = None
    stream: bool | str = "auto"
    n_jobs: int | None = None
    memory: Any = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, DTYPES)
        check_count("batch_size", self.batch_size)
        check_choice("progress", self.progress, PROGRESS_MODES,
                     hint=" (None: a bar only when stderr is a terminal)")
        check_choice("stream", self.stream, STREAM_MODES)
        check_count("n_jobs", self.n_jobs, also=(None,), hint=" (None: torch's thread count)")
        try:
            check_memory(self.memory)
        except ValueError:
            raise ValueError(f"memory must be None, a directory or a joblib.Memory; got "
                             f"{self.memory!r}.") from None
        nfpf_device.check_device(self.device, "device")
        object.__setattr__(self, "batch_size", as_count(self.batch_size))
        object.__setattr__(self, "n_jobs", as_count(self.n_jobs))

    @property
    def bar_disabled(self) -> bool | None:
        """tqdm's ``disable`` for ``progress``: None (tqdm: no bar unless stderr is a
        terminal) for ``progress=None``."""
        return None if self.progress is None else not self.progress

    @classmethod
    def of(cls, owner: Any) -> Execution:
        """The knobs as ``owner`` holds them now (validated again: they may have been set
        after construction, as ``nfpf-run`` sets ``memory``)."""
        return cls(**{f.name: getattr(owner, f.name) for f in fields(cls)})

    def as_params(self) -> dict[str, Any]:
        """The knobs as a flat ``{name: value}`` dict (not a deep copy, unlike ``asdict``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RandomStreams:
    """The independent random sources of one selection.

    Parameters
    ----------
    reference : numpy.random.Generator
        Draws the reference SFLM's weights.
    seeding : numpy.random.Generator
        Draws random seeds.
    kmeans : int
        ``random_state`` of the seeding K-means.
    rounds : numpy.random.Generator or None
        Current SFLMs' weights and candidate pools; None in faithful mode, where every round
        re-creates a generator seeded 42 (quirk Q3).
    """

    reference: np.random.Generator
    seeding: np.random.Generator
    kmeans: int
    rounds: np.random.Generator | None

    @classmethod
    def spawn(cls, seed: int, faithful: bool) -> RandomStreams:
        """Four streams spawned from ``seed``, or the released code's fixed seed 42."""
        if faithful:
            return cls(np.random.default_rng(FAITHFUL_SEED),
                       np.random.default_rng(FAITHFUL_SEED), FAITHFUL_SEED, None)
        ss_ref, ss_seed, ss_km, ss_loop = np.random.SeedSequence(seed).spawn(4)
        return cls(np.random.default_rng(ss_ref), np.random.default_rng(ss_seed),
                   int(ss_km.generate_state(1)[0] & 0x7FFFFFFF), np.random.default_rng(ss_loop))


@dataclass
class SelectionState:
    """What one NFPF selection works with and finds, apart from the estimator's parameters.

    :meth:`NFPF.select` makes one per call and hands it to every step, so the estimator
    holds only its parameters and, once a selection is done, its results (``info_``,
    ``history_``, ``seeds_``, ``reference_errors_``, published from here): one instance can
    serve several selections, one after another or one inside another, and ``clone`` has
    nothing to reset.

    Attributes
    ----------
    run : Execution
        The validated execution knobs.
    gpu : torch.device or None
        The GPU the selection computes on (None: the CPU reference path).
    info : dict
        What becomes ``info_``.
    history : list of dict
        What becomes ``history_``: one record per round.
    timings : dict of str to float
        Seconds per phase (``info_["timings"]``).
    seeds : ndarray of shape (n_seeds,)
        The initial seeds.
    reference_errors : ndarray of shape (n,) or None
        The reference SFLM's per-sample errors, once computed.
    """

    run: Execution
    gpu: torch.device | None
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    reference_errors: np.ndarray | None = None

    @classmethod
    def start(cls, owner: Any, **extra: Any) -> SelectionState:
        """The state of a new selection by ``owner`` (its knobs validated, its GPU chosen);
        ``extra``: the fields a subclass adds."""
        run = Execution.of(owner)
        return cls(run=run, gpu=nfpf_device.compute_device(run.device, "selector.device"),
                   **extra)


class NFPF(Selector):
    """NFPF: progressive selection by Reconstruction Difference between two SFLMs.

    Parameters
    ----------
    ref_hidden : int, default=1800
        Hidden units L of the reference SFLM (fitted once on the whole pool).
    ref_activation : {"sigmoid", "sine"}, default="sigmoid"
    ref_type : {0, 1}, default=1
        Reference SFLM type (1: activated encoder, linear decoder).
    cur_hidden : int, default=10
        Current SFLM size at round t is ``cur_hidden + cur_hidden_growth * t`` (t = 1, 2, ...).
    cur_hidden_growth : int, default=1
        0 gives a fixed current size ``cur_hidden``.
    cur_activation : {"sigmoid", "sine"}, default="sine"
    cur_type : {0, 1}, default=0
    C : float, default=1e-2
        Regularisation of both SFLMs (``β = (I/C + HᵀH)⁻¹HᵀT``).
    epochs : int, default=1
        SFLM fitting rounds (the released code's refinement of W by β), both SFLMs.
    candidate_pool : int or None, default=1500
        Candidates drawn at random from the remaining samples each round; ``None`` (or
        ``"all"``) scores all remaining samples.
    k : int, default=10
        Samples moved to the selection per round (k; fewer in the last round).
    seed_fraction : float, default=0.3
        Target seed count ``floor(seed_fraction * B)``.
    n_seeds : int, optional
        Explicit target seed count, overriding ``seed_fraction`` (capped at B).
    score : {"pearson", "mse"}, default="pearson"
        RD variant (:mod:`nfpf.method.rd`).
    ref_normalisation : {"candidates", "pool"} or None, default=None
        With ``score="pearson"`` the reference error is min–max normalised over the
        round's candidates, as the released code does ("candidates"), or once over the
        whole pool ("pool": a sample's score then depends on nothing but itself and S).
        None: "candidates" when ``faithful``, else "pool" (part of the quirk fixes).
    seeding : {"kmeans_margin", "kmeans_center", "kmeans_rd", "random"}, default="kmeans_margin"
        Initial seeds. "kmeans_margin": per K-means cluster, the samples with the smallest
        margin between the distances to the nearest and second-nearest centroid (released
        code). "kmeans_center": those nearest their centroid. "kmeans_rd": OUR
        INTERPRETATION of the paper's "RD for initial sample selection": per cluster, the
        samples with the highest RD against the empty model (whose reconstruction is the
        pool mean). "random": uniformly at random.
    seed_features : {"features", "pixels", "pca"}, default="features"
        Space for K-means: the pool's features, its pixels, or PCA of its pixels computed
        here with ``seed_pca_components`` components.
    seed_pca_components : int, default=50
    n_clusters : int, optional
        K of K-means; default ``pool.n_classes``, else 10 (noted in ``info_``).
    kmeans_n_init : int, default=10
    kmeans_max_iter : int, default=300
    progressive : bool, default=True
        False: seeds only (ablation): the seeding fills the whole budget (per-cluster
        counts ``floor(B/K)``, the rest round-robin over clusters in seeding order) and no
        SFLM is fitted unless the seeding needs one.
    faithful : bool, default=False
        Reproduce quirks Q1–Q3 of the released code: Q1 the current SFLM rescales hidden
        units with the candidate batch's min/max; Q2 scalar output bias from the first
        output dimension; Q3 every random draw (reference and current weights, K-means,
        candidate pools) comes from a generator seeded 42, re-created for every SFLM, so
        the run seed has no effect. The default fixes all three.
    kmeans_fit_subset : int or None, default=None
        Memory/time bound of the K-means seeding: when the pool has more samples, K-means
        is fitted on a seeded random subset of this many samples and every sample is then
        assigned to the nearest centroid (distances in row batches). ``None`` or a value
        >= n fits on the whole pool (exact, the default). CHANGES THE RESULT when it
        bites (recorded in ``info_["kmeans_fit_subset"]``).
    orthonormalisation : {"svd", "qr"}, default="svd"
        How both SFLMs' random input weights are orthonormalised: ``"svd"`` like
        ``scipy.linalg.orth`` in the released code; ``"qr"`` (our option) a Householder QR,
        about 3x faster for the CIFAR-sized reference (L = 1800, d = 3072) but different
        weights, so a different selection (see :func:`~nfpf.method.sflm.draw_weights`).
    sflm_input : {"pixels", "features"}, default="pixels"
        What both SFLMs reconstruct: the pool's pixels scaled to [-1, 1] (the paper and the
        released code; a pool without images falls back to its features), or the pool's
        features (e.g. a SimCLR embedding; our option, recorded in ``info_``).

    Other Parameters
    ----------------
    dtype : {"float32", "float64"}, default="float32"
        Precision of both SFLMs' batch products and of the RD scores (sums, solves and the
        current SFLM's ``asin`` targets are float64 either way; the fixture is matched to
        < 4e-6 in both precisions).
    batch_size : int, default=8192
        Rows per batch when the reference SFLM streams over the pool.
    progress : bool or None, default=None
        A tqdm bar on stderr over the selection (round, selected so far, elapsed): True
        always, False never, None (the default) only when stderr is a terminal (tqdm's
        ``disable=None``), so a library call from a script whose output goes to a file, a
        notebook or a batch job draws nothing unless asked.
    stream : {"auto", True, False}, default="auto"
        Read the pool in row batches of ``batch_size`` instead of building the pool-sized
        float32 array of ``pool.pixels()`` (pixels are converted batch by batch, features
        are read directly). "auto" streams when the pool's features or images are file
        backed (``np.memmap`` / ``np.load(mmap_mode="r")``). The indices are identical
        either way; only memory changes (see docs/scale.md).
    n_jobs : int or None, default=None
        CPU threads for the reference SFLM's batches (None: ``torch.get_num_threads()``).
        The selection is the same for every value: each batch is computed single-threaded
        and combined in batch order (see :class:`~nfpf.method.sflm.SFLM`). While the K-means
        seeding runs (single-threaded, for the same reason) the reference SFLM is fitted
        side by side with it, so the seeding costs one core, not the whole machine.
    memory : str, joblib.Memory or None, default=None
        Where to cache the two pieces of work that do not depend on the budget: the
        seeding K-means (its distances) and the reference SFLM's per-sample errors. A
        sweep over budgets with the same pool, seed and parameters then computes them
        once instead of once per budget (scikit-learn's ``memory``: a directory or a
        ``joblib.Memory``; ``None`` caches nothing). The selection is identical with or
        without it; ``info_["memory_hits"]`` names what was reused. Streamed pools
        (``stream``) are not cached.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where the selection computes (:mod:`nfpf.core.device`). ``"cpu"``: the reference path
        (the picks the tests pin down). A GPU: the pixels are copied to it once and the
        reference SFLM, every round's current SFLM and RD scores, the PCA and the K-means
        seeding run there. SFLM and RD arithmetic is the CPU's (sums and solves in float64);
        the K-means is :func:`nfpf.core.kernels.kmeans`, which reproduces scikit-learn's with the
        same seed up to float32 rounding, so the picks are the CPU's but where a near-tie
        falls otherwise (measured in docs/nfpf.md, "On a GPU"). ``"auto"``: the GPU when
        there is one. ``batch_size`` bounds the GPU memory.

    These execution knobs are keyword-only and validated together
    (:class:`Execution`); none of them is part of the method.

    Attributes
    ----------
    info_ : dict
        Seeding, cluster count and its source, rounds, phase timings, quirk switches.
    history_ : list of dict
        One record per round: ``round``, ``n_hidden``, ``n_selected``, ``n_candidates``,
        ``chosen`` (indices), ``scores`` (their RD), candidate score mean/max, timings.
    seeds_ : ndarray of shape (n_seeds,)
        The initial seeds (the first entries of the selection).
    reference_errors_ : ndarray of shape (n,) or None
        Per-sample MSE of the reference SFLM (None when it was not needed).

    Notes
    -----
    Time: reference SFLM ``O(n·L·(d + L) + L³)``; PCA ``O(n·d·p)``; K-means
    ``O(n_init·iter·m·K·p)`` with m = n (or ``kmeans_fit_subset``) plus ``O(n·K·p)`` to
    assign; each of the R ≈ (1 - seed_fraction)·B/k rounds
    ``O(|S|·L_t·d + L_t³ + P·L_t·d + n)`` with P the candidate pool. Memory: in memory,
    the pool's pixels ``O(n·d)``; streamed (``stream``), no pool-sized copy: only
    ``O(L² + L·d + batch_size·(L + d))`` for the reference SFLM, ``O(n)`` for the
    per-sample error vector and flags, ``O(n·K)`` for K-means distances and ``O(m·p)``
    for the K-means fit (K-means copies its input); never ``O(n²)``.
    """

    uses_images = True
    #: The name the progress bar shows.
    progress_label = "NFPF"

    def __init__(
        self,
        ref_hidden: int = 1800,
        ref_activation: str = "sigmoid",
        ref_type: int = 1,
        cur_hidden: int = 10,
        cur_hidden_growth: int = 1,
        cur_activation: str = "sine",
        cur_type: int = 0,
        C: float = 1e-2,
        epochs: int = 1,
        candidate_pool: int | str | None = 1500,
        k: int = 10,
        seed_fraction: float = 0.3,
        n_seeds: int | None = None,
        score: str = "pearson",
        ref_normalisation: str | None = None,
        seeding: str = "kmeans_margin",
        seed_features: str = "features",
        seed_pca_components: int = 50,
        n_clusters: int | None = None,
        kmeans_n_init: int = 10,
        kmeans_max_iter: int = 300,
        progressive: bool = True,
        faithful: bool = False,
        kmeans_fit_subset: int | None = None,
        orthonormalisation: str = "svd",
        sflm_input: str = "pixels",
        *,
        dtype: str = "float32",
        batch_size: int = 8192,
        progress: bool | None = None,
        stream: bool | str = "auto",
        n_jobs: int | None = None,
        memory: Any = None,
        device: str = "auto",
    ) -> None:
        self.ref_hidden = ref_hidden
        self.ref_activation = ref_activation
        self.ref_type = ref_type
        self.cur_hidden = cur_hidden
        self.cur_hidden_growth = cur_hidden_growth
        self.cur_activation = cur_activation
        self.cur_type = cur_type
        self.C = C
        self.epochs = epochs
        self.candidate_pool = candidate_pool
        self.k = k
        self.seed_fraction = seed_fraction
        self.n_seeds = n_seeds
        self.score = score
        self.ref_normalisation = ref_normalisation
        self.seeding = seeding
        self.seed_features = seed_features
        self.seed_pca_components = seed_pca_components
        self.n_clusters = n_clusters
        self.kmeans_n_init = kmeans_n_init
        self.kmeans_max_iter = kmeans_max_iter
        self.progressive = progressive
        self.faithful = faithful
        self.kmeans_fit_subset = kmeans_fit_subset
        self.orthonormalisation = orthonormalisation
        self.sflm_input = sflm_input
        self.dtype = dtype
        self.batch_size = batch_size
        self.progress = progress
        self.stream = stream
        self.n_jobs = n_jobs
        self.memory = memory
        self.device = device
        self.check_params()

    # ---------------------------------------------------------------- checks
    def check_params(self) -> None:
        """Raise a one-line ``ValueError`` naming the first bad parameter, its value and what
        it takes; run by ``__init__`` and again at the start of every selection."""
        Execution.of(self)
        self._check_sflm_params()
        self._check_round_params()
        self._check_seeding_params()

    def _check_sflm_params(self) -> None:
        """The two SFLMs: sizes, variants, regularisation, epochs, weights."""
        check_count("ref_hidden", self.ref_hidden)
        check_variant(self.ref_activation, self.ref_type, "ref_activation", "ref_type")
        check_count("cur_hidden_growth", self.cur_hidden_growth, 0)
        check_count("cur_hidden", self.cur_hidden, 0)
        if as_count(self.cur_hidden) + as_count(self.cur_hidden_growth) < 1:
            raise ValueError(f"cur_hidden={self.cur_hidden!r} with cur_hidden_growth="
                             f"{self.cur_hidden_growth!r} gives a first current SFLM of no "
                             f"hidden unit: cur_hidden + cur_hidden_growth must be >= 1.")
        check_variant(self.cur_activation, self.cur_type, "cur_activation", "cur_type")
        check_param("C", self.C, Real, low=0, closed="neither",
                    hint=" (the regularisation is 1/C)")
        check_count("epochs", self.epochs)
        check_choice("orthonormalisation", self.orthonormalisation, ORTHONORMALISATIONS)
        check_choice("sflm_input", self.sflm_input, SFLM_INPUTS)

    def _check_round_params(self) -> None:
        """The progressive rounds and the seed count."""
        check_count("candidate_pool", self.candidate_pool, also=(None, "all"),
                    hint=" (None or 'all': every remaining sample)")
        check_count("k", self.k)
        check_param("seed_fraction", self.seed_fraction, Real, low=0, high=1)
        check_count("n_seeds", self.n_seeds, also=(None,),
                    hint=" (None: seed_fraction of the budget)")
        check_choice("score", self.score, SCORES)
        check_choice("ref_normalisation", self.ref_normalisation, (*REF_NORMALISATIONS, None))
        check_flag("progressive", self.progressive)
        check_flag("faithful", self.faithful)

    def _check_seeding_params(self) -> None:
        """The initial seeding and its K-means."""
        check_choice("seeding", self.seeding, SEEDINGS)
        check_choice("seed_features", self.seed_features, SEED_FEATURES)
        check_count("seed_pca_components", self.seed_pca_components)
        check_count("n_clusters", self.n_clusters, also=(None,),
                    hint=" (None: the pool's n_classes)")
        check_count("kmeans_n_init", self.kmeans_n_init)
        check_count("kmeans_max_iter", self.kmeans_max_iter)
        check_count("kmeans_fit_subset", self.kmeans_fit_subset, also=(None,),
                    hint=" (None: fit K-means on the whole pool)")

    # ------------------------------------------------------------------ main
    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        return self._select_with(SelectionState.start(self), pool, budget, seed)

    def _select_with(self, state: SelectionState, pool: Pool, budget: int, seed: int
                     ) -> np.ndarray:
        """The selection with ``state``; publishes its results on the estimator."""
        state.info["device"] = str(state.gpu or "cpu")
        state.info["sflm_input"] = self.sflm_input
        if self.sflm_input == "features":  # Pool.pixels() falls back to the features
            pool = Pool(features=pool.features, images=None, n_classes=pool.n_classes)
        with nfpf_device.gpu_memory_guard(type(self).__name__, "selector.batch_size"):
            picks = self._select_pixels(state, pool, budget, seed)
        self.info_, self.history_ = state.info, state.history
        self.seeds_, self.reference_errors_ = state.seeds, state.reference_errors
        return picks

    def _select_pixels(self, state: SelectionState, pool: Pool, budget: int, seed: int
                       ) -> np.ndarray:
        t_start = time.perf_counter()
        run, timings = state.run, state.timings
        X = self._pool_rows(state, pool)
        # on a GPU, the pixels are copied there once: the reference and every round read them
        X_work = X if state.gpu is None else device_rows(X, state.gpu, run.batch_size)
        timings["pixels"] = time.perf_counter() - t_start
        streams = RandomStreams.spawn(seed, self.faithful)
        target = self._seed_target(budget, X.shape[0])
        ref_jobs = run.n_jobs if run.n_jobs is not None else torch.get_num_threads()
        # one core per running piece: the seeding holds one while it runs beside the
        # reference, whose batches take the others (all of them once the seeding is done)
        cpu_slots = threading.BoundedSemaphore(ref_jobs)
        memo = Memo(run.memory, enabled=not state.info["streamed"])
        state.info["memory_hits"] = []
        reference = functools.partial(self._reference, state, X, X_work, streams.reference,
                                      ref_jobs, memo, cpu_slots)
        seeds = self._seeds_beside_reference(state, pool, X, budget, target, streams,
                                             reference, memo, cpu_slots, ref_jobs)
        self._record_seeds(state, seeds, target)
        selected = list(state.seeds.tolist())
        if len(selected) < budget:
            e_ref = reference()
            t0 = time.perf_counter()
            selected = self._progressive(state, X_work, selected, budget, e_ref,
                                         streams.rounds, t_start)
            timings["progressive"] = time.perf_counter() - t0
        state.info["rounds"] = len(state.history)
        timings["total"] = time.perf_counter() - t_start
        state.info["timings"] = {k: round(v, 4) for k, v in timings.items()}
        logger.info("NFPF selected %d of %d samples (%d seeds, %d rounds) in %.2fs", budget,
                    X.shape[0], len(state.seeds), len(state.history), timings["total"])
        return np.asarray(selected, dtype=np.int64)

    def _pool_rows(self, state: SelectionState, pool: Pool) -> Any:
        """The pool's [-1, 1] pixels: an array, or a row view read in batches when streamed."""
        if state.run.stream == "auto":
            streamed = is_file_backed(pool.features) or (
                pool.images is not None and is_file_backed(pool.images))
        else:
            streamed = bool(state.run.stream)
        X = PixelRows(pool) if streamed else pool.pixels()
        state.info["streamed"] = bool(streamed)
        if X.shape[0] > 1:  # a single sample is trivially "constant" and trivially selected
            _check_not_constant(X)
        return X

    def _reference(self, state: SelectionState, X: Any, X_work: Any, rng: np.random.Generator,
                   n_jobs: int, memo: Memo, cpu_slots: threading.BoundedSemaphore
                   ) -> np.ndarray:
        """The reference SFLM's per-sample errors, computed (or read from memory) once."""
        if state.reference_errors is not None:
            return state.reference_errors
        t0 = time.perf_counter()
        run = state.run
        errors, fit_s, errors_s = memo.call(
            "reference", reference_errors, X,
            params=dict(hidden=as_count(self.ref_hidden), activation=self.ref_activation,
                        type_=as_count(self.ref_type), C=self.C, epochs=as_count(self.epochs),
                        rng_state=rng.bit_generator.state, faithful=self.faithful,
                        dtype=run.dtype, batch_size=run.batch_size, n_jobs=n_jobs,
                        orthonormalisation=self.orthonormalisation,
                        device=_device_type(state.gpu)),
            cpu_slots=cpu_slots, on_device=None if state.gpu is None else X_work)
        state.reference_errors = errors
        reused = "reference" in memo.hits
        if reused:
            state.timings["reference_cached"] = time.perf_counter() - t0
            state.info["memory_hits"] = sorted(memo.hits)
        else:
            state.timings["reference_fit"], state.timings["reference_errors"] = fit_s, errors_s
        logger.info("NFPF reference SFLM (L=%d) on %d x %d: %s", as_count(self.ref_hidden),
                    *X.shape, "reused from memory" if reused
                    else f"fit {fit_s:.2f}s, errors {errors_s:.2f}s")
        return errors

    def _seeds_beside_reference(self, state: SelectionState, pool: Pool, X: Any, budget: int,
                                target: int, streams: RandomStreams,
                                reference: Callable[[], np.ndarray], memo: Memo,
                                cpu_slots: threading.BoundedSemaphore, ref_jobs: int
                                ) -> list[int]:
        """The initial seeds; the reference SFLM is fitted beside a K-means seeding.

        The progressive phase needs the reference whatever the seeds, and the K-means
        seeding is single-threaded (scikit-learn's K-means result depends on its thread
        count, so the seeds would depend on the machine), which would leave the other
        cores idle. Neither result depends on the overlap.
        """
        if self.seeding == "kmeans_rd":
            reference()  # needed by the seeding
        overlap = (target < budget and self.seeding in ("kmeans_margin", "kmeans_center")
                   and ref_jobs > 1 and state.gpu is None)
        t0 = time.perf_counter()
        with single_threaded(), ThreadPoolExecutor(
                max_workers=1, initializer=single_threaded_worker) as background:
            with cpu_slots if overlap else contextlib.nullcontext():
                pending = background.submit(reference) if overlap else None
                seeds = self._initial_seeds(state, pool, X, budget, target, streams.kmeans,
                                            streams.seeding, reference, memo)
            release_free_memory()  # the seeding's, before the reference's second pass
            state.timings["seeding"] = time.perf_counter() - t0
            if pending is not None:
                pending.result()
        state.info["reference_overlapped_seeding"] = overlap
        state.info["memory_hits"] = sorted(memo.hits)
        return seeds

    def _record_seeds(self, state: SelectionState, seeds: list[int], target: int) -> None:
        state.seeds = np.asarray(seeds, dtype=np.int64)
        state.info.update({
            "n_seeds": len(seeds),
            "seed_target": target,
            "seeding": self.seeding,
            "seed_features": self.seed_features,
            "faithful": self.faithful,
            "quirks_reproduced": ["Q1", "Q2", "Q3"] if self.faithful else [],
            "score": self.score,
            "candidate_pool": self._candidates_per_round() or "all",
            "reference_hidden": as_count(self.ref_hidden),
        })

    def _seed_target(self, budget: int, n: int) -> int:
        if not self.progressive:
            return budget
        n_seeds = as_count(self.n_seeds)
        if n_seeds is not None:
            if n_seeds > n:
                raise ValueError(
                    f"n_seeds={n_seeds} but the pool has only {n} samples; the pool "
                    f"must hold at least the seed count. Use n_seeds <= {n}."
                )
            target = n_seeds
        else:
            target = int(np.floor(self.seed_fraction * budget + 1e-9))
        # at least one seed: the first current SFLM needs data (fixes quirk Q5)
        return int(min(max(target, 1), budget))

    # --------------------------------------------------------------- seeding
    def _resolve_clusters(self, state: SelectionState, pool: Pool) -> int:
        if self.n_clusters is not None:
            n_clu, source = as_count(self.n_clusters), "parameter"
        elif pool.n_classes is not None:
            n_clu, source = int(pool.n_classes), "pool.n_classes"
        else:
            n_clu, source = min(FALLBACK_CLUSTERS, pool.n), "fallback"
            logger.warning("NFPF: the pool has no n_classes and n_clusters is None; K-means "
                           "uses K=%d. Pass n_clusters to choose K.", n_clu)
        if n_clu > pool.n:
            raise ValueError(
                f"K-means seeding ({self.seeding}) uses K={n_clu} clusters ({source}) but the pool "
                f"has only {pool.n} samples; the pool needs at least K samples. Pass "
                f"n_clusters <= {pool.n}, or seeding='random'."
            )
        state.info["n_clusters"] = n_clu
        state.info["n_clusters_source"] = source
        return n_clu

    def _seed_space(self, state: SelectionState, pool: Pool, X: Any) -> Any:
        """The rows the seeding K-means clusters: features, pixels or their PCA."""
        if self.seed_features == "features":
            if isinstance(X, PixelRows):
                return FloatRows(pool.features)
            return np.asarray(pool.features, dtype=np.float32)
        if self.seed_features == "pixels":
            return X
        return pca_features(X, as_count(self.seed_pca_components), state.run.batch_size,
                            device=state.gpu)

    def _initial_seeds(self, state: SelectionState, pool: Pool, X: Any, budget: int,
                       target: int, km_seed: int, seed_rng: np.random.Generator,
                       reference: Callable[[], np.ndarray], memo: Memo) -> list[int]:
        """``target`` seeds (random, or ranked within K-means clusters by ``seeding``)."""
        n = X.shape[0]
        if self.seeding == "random":
            return seed_rng.choice(n, size=target, replace=False).tolist()
        n_clu = self._resolve_clusters(state, pool)
        feats = self._seed_space(state, pool, X)
        dist, inertia, fitted_rows = memo.call(
            "seeding_kmeans", kmeans_distances, feats,
            params=dict(n_clusters=n_clu, n_init=as_count(self.kmeans_n_init),
                        max_iter=as_count(self.kmeans_max_iter), random_state=km_seed,
                        fit_subset=as_count(self.kmeans_fit_subset),
                        device=_device_type(state.gpu)),
            batch_size=state.run.batch_size, on_device=state.gpu)
        labels = dist.argmin(1)
        if self.seeding == "kmeans_margin":
            key = margin_key(dist)
        elif self.seeding == "kmeans_center":
            key = dist[np.arange(n), labels]
        else:
            key = self._empty_model_key(X, labels, n_clu, reference())
        seeds, rule = per_cluster_seeds(labels, key, n_clu, target, fill=not self.progressive)
        state.info.update({
            "kmeans_fit_subset": fitted_rows,
            "seed_rule": rule,
            "kmeans_random_state": km_seed,
            "kmeans_inertia": inertia,
            "cluster_sizes": np.bincount(labels, minlength=n_clu).tolist(),
        })
        return seeds[:budget]

    def _empty_model_key(self, X: Any, labels: np.ndarray, n_clusters: int,
                         e_ref: np.ndarray) -> np.ndarray:
        """Seeding key of "kmeans_rd" (our interpretation): minus the RD against the empty
        model, whose reconstruction is the pool mean, with the reference error normalised
        within each cluster; the highest RD ranks first."""
        n = X.shape[0]
        mean = (column_mean(X) if isinstance(X, FloatRows)
                else X.mean(0, dtype=np.float64))[None, :]
        err_empty = np.concatenate([
            per_sample_error(X[s:s + CHECK_ROWS], mean, self.score)
            for s in range(0, n, CHECK_ROWS)
        ])
        key = np.empty(n)
        for c in range(n_clusters):  # loop over clusters, not samples
            members = labels == c
            key[members] = -rd_scores(err_empty[members], e_ref[members], self.score)
        return key

    # ----------------------------------------------------------- progressive
    def _current_hidden(self, t: int) -> int:
        return as_count(self.cur_hidden) + as_count(self.cur_hidden_growth) * t

    def _candidates_per_round(self) -> int | None:
        """``candidate_pool`` as a count, or None for every remaining sample."""
        size = as_count(self.candidate_pool)
        return None if size is None or size == "all" else size

    def _ref_normalisation(self) -> str:
        """Where the Pearson RD normalises the reference error: per round or once."""
        return self.ref_normalisation or ("candidates" if self.faithful else "pool")

    def _progressive(self, state: SelectionState, X: Any, selected: list[int], budget: int,
                     e_ref: np.ndarray, loop_rng: np.random.Generator | None, t_start: float
                     ) -> list[int]:
        """Grow ``selected`` to ``budget`` samples by rounds of RD (single-threaded: the
        rounds' products are small, and waking BLAS threads costs more than it saves)."""
        from tqdm.auto import tqdm

        in_s = np.zeros(X.shape[0], dtype=bool)
        in_s[selected] = True
        with single_threaded():
            e_ref = self._before_rounds(state, X, selected, budget, e_ref, loop_rng)
            pool_normalised = self.score == "pearson" and self._ref_normalisation() == "pool"
            ref_scores = minmax_normalise(e_ref) if pool_normalised else e_ref
            bar = tqdm(total=budget, initial=len(selected), desc=self.progress_label,
                       unit="sample", disable=state.run.bar_disabled, leave=False)
            try:
                while len(selected) < budget:
                    record = self._round(state, len(state.history) + 1, X, selected, in_s,
                                         budget, ref_scores, pool_normalised, loop_rng)
                    if not record["chosen"]:  # never loop without progress
                        raise RuntimeError(
                            f"{self.progress_label}: round {record['round']} added no sample "
                            f"({len(selected)} of {budget} selected, "
                            f"{record['n_candidates']} candidates); stopped instead of "
                            f"repeating it forever.")
                    record["elapsed"] = round(time.perf_counter() - t_start, 4)
                    state.history.append(record)
                    bar.update(len(record["chosen"]))
                    bar.set_postfix(round=record["round"], L=record["n_hidden"], refresh=False)
                    logger.debug("NFPF round %d: L=%d, %d/%d selected, %.2fs elapsed",
                                 record["round"], record["n_hidden"], len(selected), budget,
                                 record["elapsed"])
            finally:
                bar.close()
        return selected

    def _before_rounds(self, state: SelectionState, X: Any, selected: list[int], budget: int,
                       e_ref: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Work done once before the rounds; returns the reference errors they use."""
        return e_ref

    def _round(self, state: SelectionState, t: int, X: Any, selected: list[int],
               in_s: np.ndarray, budget: int, ref_scores: np.ndarray, pool_normalised: bool,
               loop_rng: np.random.Generator | None) -> dict[str, Any]:
        """Round t: fit the current SFLM on the selection, score candidates by RD, move the
        picks (:meth:`_pick`) into ``selected``; returns the round's history record."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(FAITHFUL_SEED) if self.faithful else loop_rng
        n_hidden = self._current_hidden(t)
        w, b = draw_weights(n_hidden, X.shape[1], rng, self.orthonormalisation)
        cur = SFLM(n_hidden, self.cur_activation, self.cur_type, self.C, self.epochs,
                   input_weights=w, bias=b, faithful=self.faithful, dtype=state.run.dtype,
                   check_finite=False)
        cur.fit(X[np.asarray(selected)])
        t1 = time.perf_counter()
        remaining = np.flatnonzero(~in_s)
        size = self._candidates_per_round()
        if size is None or size >= remaining.size:
            cand = remaining
        else:
            cand = rng.choice(remaining, size=size, replace=False)
        # Q1 (faithful): the candidates are encoded as one batch with its own min/max
        rd = rd_scores(cur.errors(X, kind=self.score, rows=cand), ref_scores[cand], self.score,
                       normalise_ref=not pool_normalised)
        top, extra = self._pick(state, rd, cand, min(as_count(self.k), budget - len(selected)))
        chosen = cand[top]
        in_s[chosen] = True
        selected.extend(int(i) for i in chosen)
        return {
            "round": t,
            "n_hidden": n_hidden,
            "n_selected": len(selected),
            "n_candidates": int(cand.size),
            "chosen": [int(i) for i in chosen],
            "scores": [float(s) for s in rd[top]],
            "candidate_score_mean": float(rd.mean()),
            "candidate_score_max": float(rd.max()),
            "time_fit": round(t1 - t0, 5),
            "time_score": round(time.perf_counter() - t1, 5),
            **extra,
        }

    def _pick(self, state: SelectionState, rd: np.ndarray, cand: np.ndarray, n_take: int
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """The round's picks as positions into ``cand`` (the ``n_take`` best RD), and extra
        fields for the round's history record."""
        return np.argsort(-rd, kind="stable")[:n_take], {}


def _device_type(device: torch.device | None) -> str:
    """"cpu" for the reference path, else the device's type (part of the memory's keys:
    the GPU path's picks differ)."""
    return "cpu" if device is None else device.type


def reference_errors(X: Any, hidden: int, activation: str, type_: int, C: float, epochs: int,
                     rng_state: dict[str, Any], faithful: bool, dtype: str, batch_size: int,
                     n_jobs: int, orthonormalisation: str, device: str = "cpu",
                     cpu_slots: threading.BoundedSemaphore | None = None,
                     on_device: torch.Tensor | None = None,
                     ) -> tuple[np.ndarray, float, float]:
    """Fit the reference SFLM on the whole pool; return its per-sample MSE (n,) and the
    fit and error times. The weights are drawn from a generator in ``rng_state``.
    ``device`` names where it runs (part of the memory's key); ``on_device``: the pool's
    rows already on that GPU (fitted there)."""
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    t0 = time.perf_counter()
    ref = SFLM(hidden, activation, type_, C, epochs, random_state=rng, faithful=faithful,
               dtype=dtype, batch_size=batch_size, check_finite=False, n_jobs=n_jobs,
               orthonormalisation=orthonormalisation)
    ref.cpu_slots = cpu_slots
    data = X if on_device is None else on_device
    ref.fit(data)
    release_free_memory()
    t1 = time.perf_counter()
    # the pool is the batch the reference was fitted on, so its fit min/max are also the
    # batch min/max of quirk Q1: rescale="fit" is exact in both modes
    errors = ref.errors(data, kind="mse", rescale="fit")
    return errors, t1 - t0, time.perf_counter() - t1


def _check_not_constant(X: Any) -> None:
    """Reject a pool whose samples are all identical (every RD score would be undefined)."""
    first = X[:1]
    for start in range(0, X.shape[0], CHECK_ROWS):
        block = X[start:start + CHECK_ROWS]
        if not np.array_equal(block, np.broadcast_to(first, block.shape)):
            return
    raise ValueError(
        f"The pool is constant: all {X.shape[0]} samples are identical, so reconstruction "
        f"errors and RD scores are undefined (NaN) and there is nothing to rank. Remove "
        f"duplicate samples or use a pool with varying samples."
    )
