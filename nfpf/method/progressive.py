"""NFPF (Natural Feature Progressive Framework) behind the common selector interface.

methods.md 1.2–1.5: a reference SFLM fitted once on the whole pool gives every sample's
reconstruction error; initial seeds are chosen by K-means (or at random); then rounds of
"fit the current SFLM on the selection, score a random candidate pool with the
Reconstruction Difference, move the k best" grow the selection to exactly B samples.
Every constant of the released code is a parameter with that default. See docs/nfpf.md.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_memory

from nfpf.core import device as nfpf_device
from nfpf.core import kernels
from nfpf.core.memo import Memo
from nfpf.core.resources import release_free_memory, single_threaded, single_threaded_worker
from nfpf.core.selection import Pool, Selector
from nfpf.method.rd import SCORES, minmax_normalise, per_sample_error
from nfpf.method.sflm import ACTIVATIONS, SFLM, draw_weights

__all__ = ["NFPF", "SEEDINGS", "SEED_FEATURES"]

logger = logging.getLogger(__name__)

SEEDINGS = ("kmeans_margin", "kmeans_center", "kmeans_rd", "random")
SEED_FEATURES = ("features", "pixels", "pca")
SFLM_INPUTS = ("pixels", "features")
REF_NORMALISATIONS = ("candidates", "pool")
FAITHFUL_SEED = 42  # quirk Q3: the released code resets every global seed to 42
FALLBACK_CLUSTERS = 10


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer, float)) and float(
        value
    ).is_integer()


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
        SFLM fitting rounds (methods.md 1.1 step 7), both SFLMs.
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
        RD variant (methods.md 1.3).
    ref_normalisation : {"candidates", "pool"} or None, default=None
        With ``score="pearson"`` the reference error is min–max normalised over the
        round's candidates, as the released code does ("candidates"), or once over the
        whole pool ("pool": a sample's score then depends on nothing but itself and S).
        None: "candidates" when ``faithful``, else "pool" (part of the quirk fixes).
    seeding : {"kmeans_margin", "kmeans_center", "kmeans_rd", "random"}, default="kmeans_margin"
        Initial seeds (methods.md 1.5). "kmeans_margin": per K-means cluster, the samples
        with the smallest margin between the distances to the nearest and second-nearest
        centroid (released code). "kmeans_center": those nearest their centroid.
        "kmeans_rd": OUR INTERPRETATION of the paper's "RD for initial sample selection":
        per cluster, the samples with the highest RD against the empty model (whose
        reconstruction is the pool mean). "random": uniformly at random.
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
    dtype : {"float32", "float64"}, default="float32"
        Precision of both SFLMs' batch products and of the RD scores (sums, solves and the
        current SFLM's ``asin`` targets are float64 either way; the fixture is matched to
        < 4e-6 in both precisions).
    batch_size : int, default=8192
        Rows per batch when the reference SFLM streams over the pool.
    progress : bool, default=True
        Show a tqdm bar over the selection (round, selected so far, elapsed).
    stream : {"auto", True, False}, default="auto"
        Read the pool in row batches of ``batch_size`` instead of building the pool-sized
        float32 array of ``pool.pixels()`` (pixels are converted batch by batch, features
        are read directly). "auto" streams when the pool's features or images are file
        backed (``np.memmap`` / ``np.load(mmap_mode="r")``). The indices are identical
        either way; only memory changes (see docs/scale.md).
    kmeans_fit_subset : int or None, default=None
        Memory/time bound of the K-means seeding: when the pool has more samples, K-means
        is fitted on a seeded random subset of this many samples and every sample is then
        assigned to the nearest centroid (distances in row batches). ``None`` or a value
        >= n fits on the whole pool (exact, the default). CHANGES THE RESULT when it
        bites (recorded in ``info_["kmeans_fit_subset"]``).
    n_jobs : int or None, default=None
        CPU threads for the reference SFLM's batches (None: ``torch.get_num_threads()``).
        The selection is the same for every value: each batch is computed single-threaded
        and combined in batch order (see :class:`~nfpf.method.sflm.SFLM`). While the K-means
        seeding runs (single-threaded, for the same reason) the reference SFLM is fitted
        side by side with it, so the seeding costs one core, not the whole machine.
    orthonormalisation : {"svd", "qr"}, default="svd"
        How both SFLMs' random input weights are orthonormalised: ``"svd"`` like
        ``scipy.linalg.orth`` in the released code; ``"qr"`` (our option) a Householder QR,
        about 3x faster for the CIFAR-sized reference (L = 1800, d = 3072) but different
        weights, so a different selection (see :func:`~nfpf.method.sflm.draw_weights`).
    sflm_input : {"pixels", "features"}, default="pixels"
        What both SFLMs reconstruct: the pool's pixels scaled to [-1, 1] (the paper and the
        released code; a pool without images falls back to its features), or the pool's
        features (e.g. a SimCLR embedding; our option, recorded in ``info_``).
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where the selection computes (:mod:`nfpf.core.device`). ``"cpu"``: the reference path
        (the picks the tests pin down). A GPU: the pixels are copied to it once and the
        reference SFLM, every round's current SFLM and RD scores, the PCA and the K-means
        seeding run there. SFLM and RD arithmetic is the CPU's (sums and solves in float64);
        the K-means is :func:`nfpf.core.kernels.kmeans`, which reproduces scikit-learn's with the
        same seed up to float32 rounding, so the picks are the CPU's but where a near-tie
        falls otherwise (measured in docs/nfpf.md, "On a GPU"). ``"auto"``: the GPU when
        there is one. ``batch_size`` bounds the GPU memory.
    memory : str, joblib.Memory or None, default=None
        Where to cache the two pieces of work that do not depend on the budget: the
        seeding K-means (its distances) and the reference SFLM's per-sample errors. A
        sweep over budgets with the same pool, seed and parameters then computes them
        once instead of once per budget (scikit-learn's ``memory``: a directory or a
        ``joblib.Memory``; ``None`` caches nothing). The selection is identical with or
        without it; ``info_["memory_hits"]`` names what was reused. Streamed pools
        (``stream``) are not cached.

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
        dtype: str = "float32",
        batch_size: int = 8192,
        progress: bool = True,
        stream: bool | str = "auto",
        kmeans_fit_subset: int | None = None,
        n_jobs: int | None = None,
        orthonormalisation: str = "svd",
        memory: Any = None,
        sflm_input: str = "pixels",
        device: str = "auto",
    ) -> None:
        # the SFLM constructor validates L, activation/type combinations, C, epochs, dtype
        SFLM(ref_hidden, ref_activation, ref_type, C, epochs, dtype=dtype, batch_size=batch_size,
             n_jobs=n_jobs, orthonormalisation=orthonormalisation)
        if not _is_int(cur_hidden_growth) or cur_hidden_growth < 0:
            raise ValueError(f"cur_hidden_growth must be an integer >= 0; got "
                             f"{cur_hidden_growth!r}.")
        if not _is_int(cur_hidden) or cur_hidden + cur_hidden_growth < 1 or cur_hidden < 0:
            raise ValueError(f"cur_hidden must be an integer >= 0 with cur_hidden + "
                             f"cur_hidden_growth >= 1 (the first current SFLM size); got "
                             f"cur_hidden={cur_hidden!r}, cur_hidden_growth="
                             f"{cur_hidden_growth!r}.")
        SFLM(max(1, int(cur_hidden) + int(cur_hidden_growth)), cur_activation, cur_type, C,
             epochs)
        if isinstance(candidate_pool, str):
            if candidate_pool != "all":
                raise ValueError(f"candidate_pool must be a positive integer, None or 'all'; "
                                 f"got {candidate_pool!r}.")
            candidate_pool = None
        elif candidate_pool is not None and (not _is_int(candidate_pool) or candidate_pool < 1):
            raise ValueError(f"candidate_pool must be a positive integer, None or 'all'; got "
                             f"{candidate_pool!r}.")
        if not _is_int(k) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}.")
        if isinstance(seed_fraction, bool) or not (0.0 <= float(seed_fraction) <= 1.0):
            raise ValueError(f"seed_fraction must be in [0, 1]; got {seed_fraction!r}.")
        if n_seeds is not None and (not _is_int(n_seeds) or n_seeds < 1):
            raise ValueError(f"n_seeds must be a positive integer or None; got {n_seeds!r}.")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}; got {score!r}.")
        if ref_normalisation is not None and ref_normalisation not in REF_NORMALISATIONS:
            raise ValueError(f"ref_normalisation must be one of {REF_NORMALISATIONS}; got "
                             f"{ref_normalisation!r}.")
        if seeding not in SEEDINGS:
            raise ValueError(f"seeding must be one of {SEEDINGS}; got {seeding!r}.")
        if seed_features not in SEED_FEATURES:
            raise ValueError(f"seed_features must be one of {SEED_FEATURES}; got "
                             f"{seed_features!r}.")
        if not _is_int(seed_pca_components) or seed_pca_components < 1:
            raise ValueError(f"seed_pca_components must be a positive integer; got "
                             f"{seed_pca_components!r}.")
        if n_clusters is not None and (not _is_int(n_clusters) or n_clusters < 1):
            raise ValueError(f"n_clusters must be a positive integer or None (= the pool's "
                             f"n_classes); got {n_clusters!r}.")
        if not _is_int(kmeans_n_init) or kmeans_n_init < 1:
            raise ValueError(f"kmeans_n_init must be a positive integer; got {kmeans_n_init!r}.")
        if not _is_int(kmeans_max_iter) or kmeans_max_iter < 1:
            raise ValueError(f"kmeans_max_iter must be a positive integer; got "
                             f"{kmeans_max_iter!r}.")
        if not (isinstance(stream, bool) or stream == "auto"):
            raise ValueError(f"stream must be True, False or 'auto'; got {stream!r}.")
        if kmeans_fit_subset is not None and (not _is_int(kmeans_fit_subset)
                                              or kmeans_fit_subset < 1):
            raise ValueError(f"kmeans_fit_subset must be a positive integer or None (fit "
                             f"K-means on the whole pool); got {kmeans_fit_subset!r}.")
        if cur_activation not in ACTIVATIONS:  # pragma: no cover - SFLM checked it
            raise ValueError(f"cur_activation must be one of {ACTIVATIONS}.")
        self.ref_hidden = int(ref_hidden)
        self.ref_activation = ref_activation
        self.ref_type = int(ref_type)
        self.cur_hidden = int(cur_hidden)
        self.cur_hidden_growth = int(cur_hidden_growth)
        self.cur_activation = cur_activation
        self.cur_type = int(cur_type)
        self.C = float(C)
        self.epochs = int(epochs)
        self.candidate_pool = None if candidate_pool is None else int(candidate_pool)
        self.k = int(k)
        self.seed_fraction = float(seed_fraction)
        self.n_seeds = None if n_seeds is None else int(n_seeds)
        self.score = score
        self.ref_normalisation = ref_normalisation
        self.seeding = seeding
        self.seed_features = seed_features
        self.seed_pca_components = int(seed_pca_components)
        self.n_clusters = None if n_clusters is None else int(n_clusters)
        self.kmeans_n_init = int(kmeans_n_init)
        self.kmeans_max_iter = int(kmeans_max_iter)
        self.progressive = bool(progressive)
        self.faithful = bool(faithful)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self.stream = stream
        self.kmeans_fit_subset = None if kmeans_fit_subset is None else int(kmeans_fit_subset)
        self.n_jobs = None if n_jobs is None else int(n_jobs)
        self.orthonormalisation = orthonormalisation
        check_memory(memory)  # a directory, a joblib.Memory or None
        self.memory = memory
        if sflm_input not in SFLM_INPUTS:
            raise ValueError(f"sflm_input must be one of {SFLM_INPUTS}; got {sflm_input!r}.")
        self.sflm_input = sflm_input
        self.device = nfpf_device.check_device(device, "device")

    # ------------------------------------------------------------------ main
    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        self._gpu = nfpf_device.compute_device(self.device, "selector.device")
        self.info_["device"] = str(self._gpu or "cpu")
        self.info_["sflm_input"] = self.sflm_input
        if self.sflm_input == "features":  # Pool.pixels() falls back to the features
            pool = Pool(features=pool.features, images=None, n_classes=pool.n_classes)
        with nfpf_device.gpu_memory_guard(type(self).__name__, "selector.batch_size"):
            return self._select_pixels(pool, budget, seed)

    def _select_pixels(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        streamed = _is_file_backed(pool.features) or (
            pool.images is not None and _is_file_backed(pool.images)) \
            if self.stream == "auto" else bool(self.stream)
        X = PixelRows(pool) if streamed else pool.pixels()
        self.info_["streamed"] = bool(streamed)
        n, d = X.shape
        if n > 1:  # a single sample is trivially "constant" and trivially selected
            _check_not_constant(X)
        # on a GPU, the pixels are copied there once: the reference and every round read them
        X_work = X if self._gpu is None else _device_rows(X, self._gpu, self.batch_size)
        timings["pixels"] = time.perf_counter() - t_start

        if self.faithful:
            ref_rng = np.random.default_rng(FAITHFUL_SEED)
            seed_rng = np.random.default_rng(FAITHFUL_SEED)
            km_seed = FAITHFUL_SEED
            loop_rng = None  # re-created (seeded 42) every round
        else:
            ss_ref, ss_seed, ss_km, ss_loop = np.random.SeedSequence(seed).spawn(4)
            ref_rng = np.random.default_rng(ss_ref)
            seed_rng = np.random.default_rng(ss_seed)
            km_seed = int(ss_km.generate_state(1)[0] & 0x7FFFFFFF)
            loop_rng = np.random.default_rng(ss_loop)

        target = self._seed_target(budget, n)
        self.reference_errors_: np.ndarray | None = None
        self.seeds_ = np.zeros(0, dtype=np.int64)
        ref_jobs = self.n_jobs if self.n_jobs is not None else torch.get_num_threads()
        # one core per running piece: the seeding holds one while it runs beside the
        # reference, whose batches take the others (all of them once the seeding is done)
        cpu_slots = threading.BoundedSemaphore(ref_jobs)

        memo = Memo(self.memory, enabled=not streamed)
        self.info_["memory_hits"] = []

        def reference() -> np.ndarray:
            if self.reference_errors_ is None:
                t0 = time.perf_counter()
                errors, fit_s, errors_s = memo.call(
                    "reference", _reference_errors, X,
                    params=dict(hidden=self.ref_hidden, activation=self.ref_activation,
                                type_=self.ref_type, C=self.C, epochs=self.epochs,
                                rng_state=ref_rng.bit_generator.state,
                                faithful=self.faithful, dtype=self.dtype,
                                batch_size=self.batch_size, n_jobs=ref_jobs,
                                orthonormalisation=self.orthonormalisation,
                                device=_device_type(self._gpu)),
                    cpu_slots=cpu_slots, on_device=None if self._gpu is None else X_work)
                self.reference_errors_ = errors
                if "reference" in memo.hits:
                    timings["reference_cached"] = time.perf_counter() - t0
                    self.info_["memory_hits"] = sorted(memo.hits)
                else:
                    timings["reference_fit"], timings["reference_errors"] = fit_s, errors_s
                logger.info("NFPF reference SFLM (L=%d) on %d x %d: %s", self.ref_hidden, n, d,
                            "reused from memory" if "reference" in memo.hits
                            else f"fit {fit_s:.2f}s, errors {errors_s:.2f}s")
            return self.reference_errors_

        if self.seeding == "kmeans_rd":
            reference()  # needed by the seeding
        # The progressive phase will need the reference whatever the seeds: fit it side by
        # side with a K-means seeding, which is single-threaded (scikit-learn's K-means
        # result depends on its thread count, so the seeds would depend on the machine) and
        # would leave the other cores idle. Neither result depends on the overlap.
        overlap = (target < budget and self.seeding in ("kmeans_margin", "kmeans_center")
                   and ref_jobs > 1 and self._gpu is None)
        t0 = time.perf_counter()
        with single_threaded(), ThreadPoolExecutor(
                max_workers=1, initializer=single_threaded_worker) as background:
            with cpu_slots if overlap else contextlib.nullcontext():
                pending = background.submit(reference) if overlap else None
                seeds = self._initial_seeds(pool, X, budget, target, km_seed, seed_rng,
                                            reference, memo)
            release_free_memory()  # the seeding's, before the reference's second pass
            timings["seeding"] = time.perf_counter() - t0
            if pending is not None:
                pending.result()
        self.info_["reference_overlapped_seeding"] = overlap
        self.info_["memory_hits"] = sorted(memo.hits)
        self.seeds_ = np.asarray(seeds, dtype=np.int64)
        self.info_.update({
            "n_seeds": len(seeds),
            "seed_target": target,
            "seeding": self.seeding,
            "seed_features": self.seed_features,
            "faithful": self.faithful,
            "quirks_reproduced": ["Q1", "Q2", "Q3"] if self.faithful else [],
            "score": self.score,
            "candidate_pool": self.candidate_pool if self.candidate_pool else "all",
            "reference_hidden": self.ref_hidden,
        })
        selected = list(self.seeds_.tolist())
        if len(selected) < budget:
            e_ref = reference()
            t0 = time.perf_counter()
            selected = self._progressive(X_work, selected, budget, e_ref, loop_rng, t_start)
            timings["progressive"] = time.perf_counter() - t0
        self.info_["rounds"] = len(self.history_)
        timings["total"] = time.perf_counter() - t_start
        self.info_["timings"] = {k: round(v, 4) for k, v in timings.items()}
        logger.info("NFPF selected %d of %d samples (%d seeds, %d rounds) in %.2fs", budget, n,
                    len(self.seeds_), len(self.history_), timings["total"])
        return np.asarray(selected, dtype=np.int64)

    def _seed_target(self, budget: int, n: int) -> int:
        if not self.progressive:
            return budget
        if self.n_seeds is not None:
            if self.n_seeds > n:
                raise ValueError(
                    f"n_seeds={self.n_seeds} but the pool has only {n} samples; the pool "
                    f"must hold at least the seed count. Use n_seeds <= {n}."
                )
            target = self.n_seeds
        else:
            target = int(np.floor(self.seed_fraction * budget + 1e-9))
        # at least one seed: the first current SFLM needs data (fixes quirk Q5)
        return int(min(max(target, 1), budget))

    # --------------------------------------------------------------- seeding
    def _resolve_clusters(self, pool: Pool) -> int:
        if self.n_clusters is not None:
            n_clu, source = self.n_clusters, "parameter"
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
        self.info_["n_clusters"] = n_clu
        self.info_["n_clusters_source"] = source
        return n_clu

    def _seed_space(self, pool: Pool, X: np.ndarray, km_seed: int) -> np.ndarray:
        if self.seed_features == "features":
            if isinstance(X, PixelRows):
                return FloatRows(pool.features)
            return np.asarray(pool.features, dtype=np.float32)
        if self.seed_features == "pixels":
            return X
        return pca_features(X, self.seed_pca_components, self.batch_size, device=self._gpu)

    def _initial_seeds(self, pool, X, budget, target, km_seed, seed_rng, reference,
                       memo: Memo | None = None) -> list[int]:
        n = X.shape[0]
        if self.seeding == "random":
            return seed_rng.choice(n, size=target, replace=False).tolist()
        n_clu = self._resolve_clusters(pool)
        feats = self._seed_space(pool, X, km_seed)
        memo = memo if memo is not None else Memo(None)
        dist, inertia, fitted_rows = memo.call(
            "seeding_kmeans", _kmeans_distances, feats,
            params=dict(n_clusters=n_clu, n_init=self.kmeans_n_init,
                        max_iter=self.kmeans_max_iter, random_state=km_seed,
                        fit_subset=self.kmeans_fit_subset, device=_device_type(self._gpu)),
            batch_size=self.batch_size, on_device=self._gpu)
        self.info_["kmeans_fit_subset"] = fitted_rows
        labels = dist.argmin(1)
        if self.seeding == "kmeans_margin":
            if n_clu == 1:
                key = dist[:, 0]
            else:
                two = np.partition(dist, 1, axis=1)[:, :2]
                key = two[:, 1] - two[:, 0]  # small margin first
        elif self.seeding == "kmeans_center":
            key = dist[np.arange(n), labels]
        else:  # kmeans_rd (our interpretation): RD against the empty model
            e_ref = reference()
            mean = (_column_mean(X) if isinstance(X, FloatRows)
                    else X.mean(0, dtype=np.float64))[None, :]
            err_empty = np.concatenate([
                per_sample_error(X[s:s + 8192], mean, self.score) for s in range(0, n, 8192)
            ])
            key = np.empty(n)
            for c in range(n_clu):  # loop over clusters, not samples
                members = labels == c
                ref_part = e_ref[members]
                if self.score == "pearson":
                    ref_part = minmax_normalise(ref_part)
                key[members] = -(err_empty[members] - ref_part)  # high RD first
        order = np.lexsort((np.arange(n), key, labels))  # by cluster, then key, then index
        sizes = np.bincount(labels, minlength=n_clu)
        per_cluster = target // n_clu
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        if per_cluster == 0:
            # fewer seeds than clusters: one seed from each of the `target` largest clusters
            big = np.argsort(-sizes, kind="stable")[:target]
            rule = "one_per_largest_cluster"
            seeds = [int(order[starts[c]]) for c in big if sizes[c] > 0]
        else:
            rule = "per_cluster"
            take = np.minimum(sizes, per_cluster)
            # round-robin by rank: rank 0 of every cluster, then rank 1, ...
            ranks = [
                order[starts[c] + r] for r in range(int(take.max(initial=0)))
                for c in range(n_clu) if r < take[c]
            ]
            seeds = [int(i) for i in ranks]
            if not self.progressive and len(seeds) < target:  # seeds only: fill the budget
                rule = "per_cluster_then_round_robin"
                taken = np.zeros(n, dtype=bool)
                taken[seeds] = True
                rest = [order[starts[c]:starts[c] + sizes[c]] for c in range(n_clu)]
                rest = [r[~taken[r]] for r in rest]
                depth = max((len(r) for r in rest), default=0)
                for r in range(depth):
                    for c in range(n_clu):
                        if r < len(rest[c]) and len(seeds) < target:
                            seeds.append(int(rest[c][r]))
                    if len(seeds) >= target:
                        break
        self.info_["seed_rule"] = rule
        self.info_["kmeans_random_state"] = km_seed
        self.info_["kmeans_inertia"] = inertia
        self.info_["cluster_sizes"] = sizes.tolist()
        return seeds[:budget]

    # ----------------------------------------------------------- progressive
    def _current_hidden(self, t: int) -> int:
        return self.cur_hidden + self.cur_hidden_growth * t

    def _progressive(self, X, selected, budget, e_ref, loop_rng, t_start) -> list[int]:
        from tqdm.auto import tqdm

        with single_threaded():
            return self._rounds(X, selected, budget, e_ref, loop_rng, t_start, tqdm)

    def _rounds(self, X, selected, budget, e_ref, loop_rng, t_start, tqdm) -> list[int]:
        n = X.shape[0]
        in_s = np.zeros(n, dtype=bool)
        in_s[selected] = True
        normalisation = self.ref_normalisation or ("candidates" if self.faithful else "pool")
        e_ref_pool = minmax_normalise(e_ref) if normalisation == "pool" else None
        bar = tqdm(total=budget, initial=len(selected), desc="NFPF", unit="sample",
                   disable=not self.progress, leave=False)
        t = 0
        try:
            while len(selected) < budget:
                t += 1
                t0 = time.perf_counter()
                rng = np.random.default_rng(FAITHFUL_SEED) if self.faithful else loop_rng
                n_hidden = self._current_hidden(t)
                w, b = draw_weights(n_hidden, X.shape[1], rng, self.orthonormalisation)
                cur = SFLM(n_hidden, self.cur_activation, self.cur_type, self.C, self.epochs,
                           input_weights=w, bias=b, faithful=self.faithful, dtype=self.dtype,
                           check_finite=False)
                cur.fit(X[np.asarray(selected)])
                t1 = time.perf_counter()
                remaining = np.flatnonzero(~in_s)
                if self.candidate_pool is None or self.candidate_pool >= remaining.size:
                    cand = remaining
                else:
                    cand = rng.choice(remaining, size=self.candidate_pool, replace=False)
                # Q1 (faithful): the candidates are encoded as one batch with its own min/max
                err_cur = cur.errors(X, kind=self.score, rows=cand)
                if self.score == "pearson":
                    err_ref = minmax_normalise(e_ref[cand]) if e_ref_pool is None \
                        else e_ref_pool[cand]
                else:
                    err_ref = e_ref[cand]
                rd = err_cur - err_ref
                n_take = min(self.k, budget - len(selected))
                top = np.argsort(-rd, kind="stable")[:n_take]
                chosen = cand[top]
                in_s[chosen] = True
                selected.extend(int(i) for i in chosen)
                t2 = time.perf_counter()
                self.history_.append({
                    "round": t,
                    "n_hidden": n_hidden,
                    "n_selected": len(selected),
                    "n_candidates": int(cand.size),
                    "chosen": [int(i) for i in chosen],
                    "scores": [float(s) for s in rd[top]],
                    "candidate_score_mean": float(rd.mean()),
                    "candidate_score_max": float(rd.max()),
                    "time_fit": round(t1 - t0, 5),
                    "time_score": round(t2 - t1, 5),
                    "elapsed": round(t2 - t_start, 4),
                })
                bar.update(len(chosen))
                bar.set_postfix(round=t, L=n_hidden, refresh=False)
                logger.debug("NFPF round %d: L=%d, %d/%d selected, %.2fs elapsed", t, n_hidden,
                             len(selected), budget, t2 - t_start)
        finally:
            bar.close()
        return selected


def _kmeans_distances(feats: Any, n_clusters: int, n_init: int, max_iter: int,
                      random_state: int, fit_subset: int | None, device: str = "cpu",
                      batch_size: int = 8192, on_device: torch.device | None = None,
                      ) -> tuple[np.ndarray, float, int | None]:
    """The seeding K-means: fit, then every sample's distances to the K centroids.

    Returns ``(distances (n, K), inertia, rows fitted)``; rows fitted is None when K-means
    saw the whole pool, else the size of the seeded subset ``fit_subset`` it was fitted on.
    ``device`` names where it runs (part of the memory's key); ``on_device`` is that GPU,
    where :func:`nfpf.core.kernels.kmeans` replaces scikit-learn's.
    """
    from sklearn.cluster import KMeans

    n = feats.shape[0]
    if on_device is not None:
        return _kmeans_distances_on(feats, n_clusters, n_init, max_iter, random_state,
                                    fit_subset, batch_size, on_device)
    with warnings.catch_warnings():
        # fewer distinct points than clusters is reported in info_, not as a warning
        warnings.simplefilter("ignore", category=UserWarning)
        km = KMeans(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter,
                    random_state=random_state)
        bounded = fit_subset is not None and fit_subset < n
        if bounded:
            fit_rows = np.sort(np.random.default_rng(random_state).choice(
                n, size=max(fit_subset, n_clusters), replace=False))
            km.fit(np.asarray(feats[fit_rows], dtype=np.float32))
        else:
            km.fit(np.asarray(feats[:n], dtype=np.float32) if isinstance(feats, FloatRows)
                   else feats)
    if isinstance(feats, FloatRows) or bounded:
        step = max(1, batch_size)
        dist = np.concatenate([km.transform(np.asarray(feats[s:s + step], dtype=np.float32))
                               for s in range(0, n, step)])
    else:
        dist = km.transform(feats)  # (n, K)
    return dist, float(km.inertia_), int(fit_rows.size) if bounded else None


def _kmeans_distances_on(feats: Any, n_clusters: int, n_init: int, max_iter: int,
                         random_state: int, fit_subset: int | None, batch_size: int,
                         device: torch.device) -> tuple[np.ndarray, float, int | None]:
    """:func:`_kmeans_distances` with :func:`nfpf.core.kernels.kmeans` on ``device``."""
    n = feats.shape[0]
    data = kernels.as_device_tensor(np.asarray(feats[:n], dtype=np.float32), device)
    bounded = fit_subset is not None and fit_subset < n
    fit_rows = None
    if bounded:
        fit_rows = np.sort(np.random.default_rng(random_state).choice(
            n, size=max(fit_subset, n_clusters), replace=False))
    fitted = data if fit_rows is None else data[torch.as_tensor(fit_rows, device=device)]
    result = kernels.kmeans(fitted, n_clusters, n_init=n_init, max_iter=max_iter,
                            seed=random_state, batch_size=batch_size)
    dist = kernels.center_distances(data, result.centers, batch_size=batch_size)
    return dist.cpu().numpy(), result.inertia, None if fit_rows is None else int(fit_rows.size)


def _device_type(device: torch.device | None) -> str:
    """"cpu" for the reference path, else the device's type (part of the memory's keys:
    the GPU path's picks differ)."""
    return "cpu" if device is None else device.type


def _device_rows(X: Any, device: torch.device, batch_size: int) -> torch.Tensor:
    """The float32 rows of ``X`` (array or row view) as one tensor on ``device``, copied in
    row batches (a file-backed pool is never read whole into host memory)."""
    out = torch.empty(X.shape, dtype=torch.float32, device=device)
    for start in range(0, X.shape[0], batch_size):
        block = np.asarray(X[start:start + batch_size], dtype=np.float32)
        out[start:start + batch_size] = torch.from_numpy(block).to(device)
    return out


def _reference_errors(X: Any, hidden: int, activation: str, type_: int, C: float, epochs: int,
                      rng_state: dict[str, Any], faithful: bool, dtype: str, batch_size: int,
                      n_jobs: int, orthonormalisation: str, device: str = "cpu",
                      cpu_slots: threading.BoundedSemaphore | None = None,
                      on_device: torch.Tensor | None = None,
                      ) -> tuple[np.ndarray, float, float]:
    """Fit the reference SFLM on the whole pool; return its per-sample MSE (n,) and the
    fit and error times. The weights are drawn from a generator in ``rng_state``.
    ``on_device``: the pool's rows already on the GPU named by ``device`` (fitted there)."""
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


class FloatRows:
    """Row access to a (possibly file-backed) 2-D array, each read returned as float32.

    ``rows[i:j]`` and ``rows[index_array]`` read only those rows, so a memmapped pool is
    never copied whole. Values equal those of ``np.asarray(array, dtype=np.float32)``.
    """

    is_row_view = True  # nfpf.method.sflm reads it batch by batch instead of np.asarray-ing it

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = (int(array.shape[0]), int(np.prod(array.shape[1:], dtype=np.int64)))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, block: np.ndarray) -> np.ndarray:
        out = np.asarray(block.reshape(len(block), -1), dtype=np.float32)
        return out if out.flags.writeable else out.copy()  # read-only memmap rows

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.asarray([key])][0]
        if not isinstance(key, slice):
            key = np.asarray(key)
            if key.dtype == bool:
                key = np.flatnonzero(key)
        return self._convert(np.asarray(self.array[key]))


class PixelRows(FloatRows):
    """Streamed :meth:`Pool.pixels`: rows of ``2 * images - 1`` (or the features as float32
    when the pool has no images), computed per read with the same float32 operations."""

    def __init__(self, pool: Pool) -> None:
        self.has_images = pool.images is not None
        super().__init__(pool.images if self.has_images else pool.features)

    def _convert(self, block: np.ndarray) -> np.ndarray:
        if not self.has_images:
            return super()._convert(block)
        out = np.multiply(block.reshape(len(block), -1), 2.0, dtype=np.float32)
        out -= 1.0
        return out


def _is_file_backed(array: Any) -> bool:
    """True when ``array`` (or an array it is a view of) is a memory map of a file."""
    import mmap

    seen = 0
    while array is not None and seen < 32:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
        seen += 1
    return False


def _column_mean(X: Any, batch_size: int = 8192) -> np.ndarray:
    """Float64 column mean of X (array or row view), read in row batches."""
    total = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, X.shape[0], batch_size):
        total += np.asarray(X[start:start + batch_size]).sum(0, dtype=np.float64)
    return total / X.shape[0]


def pca_features(X: np.ndarray, n_components: int, batch_size: int = 8192,
                 device: torch.device | None = None) -> np.ndarray:
    """Exact PCA projection, streamed: covariance in batches, then its top eigenvectors.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_components : int
        Number of components p (capped at min(n, d)).
    batch_size : int
        Rows per batch.
    device : torch.device, optional
        A GPU to compute on (covariance in float64, ``torch.linalg.eigh``); None: the CPU
        path (scipy). The same axes up to float rounding and their signs.

    Returns
    -------
    Z : ndarray of shape (n, p), float32
        Centred X projected on the p leading principal axes (signs arbitrary).

    Notes
    -----
    Time ``O(n·d² + d³)``, memory ``O(d² + batch_size·d + n·p)`` (no copy of X), unlike
    scikit-learn's PCA which copies X first.
    """
    import scipy.linalg

    from nfpf.method.sflm import _gram

    n, d = X.shape
    p = int(min(n_components, n, d))
    if device is not None:
        return _pca_on(X, p, batch_size, device)
    shift = torch.from_numpy(np.asarray(X[:batch_size], dtype=np.float32).mean(0))
    gram = torch.zeros(d, d, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, n, batch_size):
        xb = torch.from_numpy(np.asarray(X[start:start + batch_size], dtype=np.float32)) - shift
        gram += _gram(xb).to(torch.float64)
        total += xb.sum(0).to(torch.float64)
    mean_c = total / n
    cov = (gram / n - torch.outer(mean_c, mean_c)).numpy()
    _, vecs = scipy.linalg.eigh(cov, subset_by_index=[d - p, d - 1])
    axes = torch.from_numpy(np.ascontiguousarray(vecs[:, ::-1]).astype(np.float32))
    mean = (shift.to(torch.float64) + mean_c).to(torch.float32)
    out = np.empty((n, p), dtype=np.float32)
    for start in range(0, n, batch_size):
        xb = torch.from_numpy(np.asarray(X[start:start + batch_size], dtype=np.float32))
        out[start:start + batch_size] = ((xb - mean) @ axes).numpy()
    return out


def _pca_on(X: Any, p: int, batch_size: int, device: torch.device) -> np.ndarray:
    """:func:`pca_features` on ``device``: rows copied in batches, float64 covariance."""
    n, d = X.shape
    rows = _device_rows(X, device, batch_size)
    mean = rows.mean(dim=0, dtype=torch.float64)
    cov = torch.zeros(d, d, dtype=torch.float64, device=device)
    for start in range(0, n, batch_size):
        block = rows[start:start + batch_size].to(torch.float64) - mean
        cov += block.T @ block
    _, vecs = torch.linalg.eigh(cov / n)
    axes = vecs[:, -p:].flip(1).to(torch.float32)  # leading axes first
    out = torch.empty((n, p), dtype=torch.float32, device=device)
    for start in range(0, n, batch_size):
        out[start:start + batch_size] = (rows[start:start + batch_size] - mean.float()) @ axes
    return out.cpu().numpy()


def _check_not_constant(X: np.ndarray) -> None:
    """Reject a pool whose samples are all identical (every RD score would be undefined)."""
    first = X[:1]
    for start in range(0, X.shape[0], 8192):
        if not np.array_equal(X[start:start + 8192], np.broadcast_to(
                first, X[start:start + 8192].shape)):
            return
    raise ValueError(
        f"The pool is constant: all {X.shape[0]} samples are identical, so reconstruction "
        f"errors and RD scores are undefined (NaN) and there is nothing to rank. Remove "
        f"duplicate samples or use a pool with varying samples."
    )
