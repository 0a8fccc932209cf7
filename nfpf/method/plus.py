"""NFPF+ : NFPF with the fixes found by our diagnosis of NFPF on MNIST (docs/nfpf_plus.md).

NFPF's idea is kept: a reference SFLM fitted once on the whole pool, a current SFLM fitted
on the selection, progressive growth by the Reconstruction Difference (RD), no labels. Each
change is a named option that reduces to NFPF when switched off:

* ``rd_space="pca"``: both SFLMs reconstruct a PCA projection of the pixels (scaled into
  [-1, 1]) instead of raw pixels, so RD measures structure rather than stroke-level pixel
  noise.
* ``balance``: the k samples moved per round are spread over K-means clusters of the seed
  space (``"equal"``: the least-covered cluster takes its best-RD candidate next;
  ``"proportional"``: coverage relative to cluster size), instead of the global top-k RD,
  which piles up in the few clusters of complex images.
* ``typicality_weight``: within a cluster, the candidate score is the min-max normalised
  RD minus ``typicality_weight`` times the min-max normalised distance to the cluster
  centroid (prefers informative samples that are still typical).
* ``n_references``: mean of the min-max normalised errors of several reference SFLMs with
  independent random weights (less variance from one weight draw).
* ``candidate_pool`` (inherited) defaults to scoring all remaining samples.

Everything else is NFPF's code: the selection and its rounds (:mod:`nfpf.method.progressive`;
NFPF+ overrides only the work before the rounds and each round's pick), the SFLMs
(:mod:`nfpf.method.sflm`), the RD (:mod:`nfpf.method.rd`), seeding and PCA
(:mod:`nfpf.method.seeding`).
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances

from nfpf.core import kernels
from nfpf.core.selection import Pool, check_choice, check_param
from nfpf.method.checks import as_count, check_count
from nfpf.method.progressive import FALLBACK_CLUSTERS, NFPF, SelectionState
from nfpf.method.rd import minmax_normalise
from nfpf.method.seeding import pca_features
from nfpf.method.sflm import SFLM

__all__ = ["BALANCES", "RD_SPACES", "Balance", "NFPFPlus", "PlusSelectionState"]

RD_SPACES = ("pixels", "pca")
BALANCES = ("none", "equal", "proportional")
#: The balancing K-means: restarts, and mini-batch K-means above this many clusters (CPU).
BALANCE_N_INIT = 3
BALANCE_MINIBATCH_ABOVE = 500
BALANCE_MINIBATCH_ROWS = 4096


@dataclass
class Balance:
    """The balancing clusters of one selection and how far the picks cover them.

    Attributes
    ----------
    labels : ndarray of shape (n,)
        Balancing cluster of every pool sample.
    own : ndarray of shape (n,)
        Distance of every sample to its cluster's centroid.
    counts : ndarray of shape (K,), float
        Selected samples per cluster so far (updated by every round's picks).
    sizes : ndarray of shape (K,), float
    """

    labels: np.ndarray
    own: np.ndarray
    counts: np.ndarray
    sizes: np.ndarray


@dataclass
class PlusSelectionState(SelectionState):
    """NFPF's :class:`~nfpf.method.progressive.SelectionState` and what NFPF+ adds to one
    selection.

    Attributes
    ----------
    pool : Pool
        The pool as given (the seed space and the class count come from it; the SFLMs see
        its ``rd_space``).
    seed_space : ndarray of shape (n, p) or None
        The rows the seeding and the balancing K-means cluster, computed once.
    balance : Balance or None
        None without balancing (or before the rounds).
    """

    pool: Pool | None = None
    seed_space: Any = None
    balance: Balance | None = None


class NFPFPlus(NFPF):
    """NFPF+ : NFPF's progressive RD selection with feature-space, diversity and ensemble fixes.

    Parameters
    ----------
    rd_space : {"pixels", "pca"}, default="pca"
        Space both SFLMs reconstruct: the pool's [-1, 1] pixels (NFPF) or the PCA projection
        of the pixels on ``rd_pca_components`` axes, divided by its largest absolute value
        so that it lies in [-1, 1] (the sine decoder's ``asin`` targets need it).
    rd_pca_components : int, default=50
    balance : {"none", "equal", "proportional"}, default="equal"
        How the k samples of a round are chosen. "none": the global top-k RD (NFPF).
        "equal": one at a time, the cluster with the fewest selected samples (ties: the
        largest cluster) gives its best-scored remaining candidate. "proportional": the same
        with coverage counted relative to the cluster's size.
    balance_clusters : int, "budget" or None, default="budget"
        K of the balancing K-means (on the seed space); None: the seeding's K
        (``n_clusters``, else the pool's ``n_classes``, else 10); "budget": K = B, so every
        pick comes from its own cluster (mini-batch K-means above K = 500). Capped at n.
    typicality_weight : float, default=3.0
        >= 0. Within a cluster, score = minmax(RD) - w * minmax(distance to centroid).
        Needs ``balance != "none"`` when > 0.
    n_references : int, default=1
        Reference SFLMs averaged (each min-max normalised over the pool first).
    candidate_pool : int, "all" or None, default=None
        Random candidates per round; None/"all" scores every remaining sample.
    seeding : default="kmeans_center"
        As NFPF, but seeds nearest their centroid by default (NFPF's margin seeds are the
        most ambiguous samples of each cluster).
    seed_features : default="pca"
    ref_normalisation : {"candidates", "pool"} or None, default="candidates"
        As NFPF; None also means "candidates" here (the per-round normalisation NFPF+ was
        frozen with), where NFPF's non-faithful default normalises once over the pool.
    **nfpf_params
        Every other NFPF parameter (``ref_hidden``, ``k``, ``seed_fraction``, ...), same
        defaults. ``faithful`` is not accepted: NFPF+ never reproduces the quirks.

    Attributes
    ----------
    info_, history_, seeds_, reference_errors_ : as NFPF; ``history_`` rounds also give the
        ``clusters`` of the chosen samples when balancing.
    balance_labels_ : ndarray of shape (n,) or None
        Balancing cluster of every pool sample.

    Notes
    -----
    Time: NFPF's, with d replaced by p = ``rd_pca_components`` for the SFLMs, plus PCA
    ``O(n·d² + d³)``, one extra K-means ``O(iter·n·K·p)`` for balancing, ``n_references``
    reference fits, and per round ``O(P·L_t·p + k·P)`` with P the candidates (all remaining
    by default). Memory ``O(n·(d + p + K))`` plus NFPF's SFLM memory; never ``O(n²)``.
    """

    uses_images = True
    progress_label = "NFPF+"

    def __init__(
        self,
        rd_space: str = "pca",
        rd_pca_components: int = 50,
        balance: str = "equal",
        balance_clusters: int | str | None = "budget",
        typicality_weight: float = 3.0,
        n_references: int = 1,
        candidate_pool: int | str | None = None,
        seeding: str = "kmeans_center",
        seed_features: str = "pca",
        ref_normalisation: str | None = "candidates",
        **nfpf_params: Any,
    ) -> None:
        if "faithful" in nfpf_params:
            raise ValueError("NFPFPlus has no 'faithful' parameter: it never reproduces the "
                             "released code's quirks. Use selector 'nfpf' with faithful=true.")
        self.rd_space = rd_space
        self.rd_pca_components = rd_pca_components
        self.balance = balance
        self.balance_clusters = balance_clusters
        self.typicality_weight = typicality_weight
        self.n_references = n_references
        # NFPF stores the rest and checks everything (these first: check_params reads them)
        super().__init__(candidate_pool=candidate_pool, seeding=seeding,
                         seed_features=seed_features, faithful=False,
                         ref_normalisation=ref_normalisation, **nfpf_params)

    def check_params(self) -> None:
        """NFPF's checks, then NFPF+'s own parameters."""
        super().check_params()
        check_choice("rd_space", self.rd_space, RD_SPACES)
        check_count("rd_pca_components", self.rd_pca_components)
        check_choice("balance", self.balance, BALANCES)
        check_count("balance_clusters", self.balance_clusters, also=(None, "budget"),
                    hint=" (None: the seeding's K; 'budget': K = B)")
        check_param("typicality_weight", self.typicality_weight, Real, low=0)
        if self.typicality_weight > 0 and self.balance == "none":
            raise ValueError(f"typicality_weight={self.typicality_weight!r} > 0 needs "
                             f"clusters: set balance to 'equal' or 'proportional', or "
                             f"typicality_weight=0.")
        check_count("n_references", self.n_references)

    # ------------------------------------------------------------------ main
    def _select(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        state = PlusSelectionState.start(self, pool=pool)
        t0 = time.perf_counter()
        if self.rd_space == "pca":
            Z = pca_features(pool.pixels(), as_count(self.rd_pca_components),
                             state.run.batch_size, device=state.gpu)
            scale = float(np.abs(Z).max())
            if scale > 0:
                Z /= scale
            work = Pool(features=Z, images=None, n_classes=pool.n_classes)
        else:
            work = pool
        state.info.update({"rd_space": self.rd_space, "balance": self.balance,
                           "typicality_weight": self.typicality_weight,
                           "n_references": self.n_references,
                           "rd_space_time": round(time.perf_counter() - t0, 4)})
        picks = self._select_with(state, work, budget, seed)
        self.balance_labels_ = None if state.balance is None else state.balance.labels
        return picks

    def _ref_normalisation(self) -> str:
        """None means "candidates" here: the per-round normalisation NFPF+ was frozen with."""
        return self.ref_normalisation or "candidates"

    def _seed_space(self, state: PlusSelectionState, pool: Pool, X: Any) -> Any:
        """The seed space of the pool as given (``state.pool``), computed once per selection
        for the seeding and the balancing K-means."""
        if state.seed_space is None:
            given = state.pool
            same_pca = as_count(self.seed_pca_components) == as_count(self.rd_pca_components)
            if self.seed_features == "features":
                state.seed_space = np.asarray(given.features, dtype=np.float32)
            elif self.seed_features == "pixels":
                state.seed_space = given.pixels()
            elif self.rd_space == "pca" and same_pca:
                state.seed_space = X  # the same PCA (scaled: K-means is scale invariant)
            else:
                state.seed_space = pca_features(given.pixels(),
                                                as_count(self.seed_pca_components),
                                                state.run.batch_size, device=state.gpu)
        return state.seed_space

    # --------------------------------------------------------------- helpers
    def _balance_clusters(self, state: PlusSelectionState, n: int, budget: int) -> int:
        """K of the balancing K-means (at most n)."""
        if self.balance_clusters == "budget":
            n_clu = budget
        elif self.balance_clusters is not None:
            n_clu = as_count(self.balance_clusters)
        elif self.n_clusters is not None:
            n_clu = as_count(self.n_clusters)
        elif state.pool.n_classes is not None:
            n_clu = state.pool.n_classes
        else:
            n_clu = FALLBACK_CLUSTERS
        return int(min(n_clu, n))

    def _balance_clustering(self, state: PlusSelectionState, X: Any, selected: list[int],
                            rng: np.random.Generator, budget: int) -> Balance:
        """K-means of the seed space (:func:`nfpf.core.kernels.fit_kmeans`: mini-batch above
        500 clusters on the CPU, the torch k-means on a GPU), covered so far by
        ``selected``."""
        n = X.shape[0]
        n_clu = self._balance_clusters(state, n, budget)
        feats = self._seed_space(state, state.pool, X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # fewer distinct points
            found = kernels.fit_kmeans(
                feats, n_clu, int(rng.integers(2**31 - 1)), n_init=BALANCE_N_INIT,
                max_iter=as_count(self.kmeans_max_iter), minibatch_above=BALANCE_MINIBATCH_ABOVE,
                batch_size=BALANCE_MINIBATCH_ROWS, device=state.gpu)
        if state.gpu is None:  # the distances KMeans.transform gives
            dist = euclidean_distances(np.ascontiguousarray(feats), found.centers.numpy())
        else:
            dist = kernels.center_distances(feats, found.centers).cpu().numpy()
        labels = dist.argmin(1)
        state.info["balance_clusters"] = n_clu
        return Balance(
            labels=labels, own=dist[np.arange(n), labels],
            counts=np.bincount(labels[np.asarray(selected)], minlength=n_clu).astype(float),
            sizes=np.bincount(labels, minlength=n_clu).astype(np.float64))

    def _references(self, state: PlusSelectionState, X: Any, e_ref: np.ndarray,
                    rng: np.random.Generator | None) -> np.ndarray:
        """The mean of ``n_references`` min-max normalised reference errors (the first is
        NFPF's ``e_ref``)."""
        n_references = as_count(self.n_references)
        if n_references == 1:
            return e_ref
        errs = [minmax_normalise(e_ref)]
        for _ in range(n_references - 1):
            ref = SFLM(self.ref_hidden, self.ref_activation, self.ref_type, self.C,
                       self.epochs, random_state=rng, dtype=state.run.dtype,
                       batch_size=state.run.batch_size, check_finite=False,
                       orthonormalisation=self.orthonormalisation)
            ref.fit(X)
            errs.append(minmax_normalise(ref.errors(X, kind="mse", rescale="fit")))
        return np.mean(errs, axis=0)

    # ----------------------------------------------------------- progressive
    def _before_rounds(self, state: PlusSelectionState, X: Any, selected: list[int],
                       budget: int, e_ref: np.ndarray, rng: np.random.Generator | None
                       ) -> np.ndarray:
        """Average the reference ensemble, then cluster the pool for balancing."""
        e_ref = self._references(state, X, e_ref, rng)
        if self.balance != "none":
            state.balance = self._balance_clustering(state, X, selected, rng, budget)
        return e_ref

    def _pick(self, state: PlusSelectionState, rd: np.ndarray, cand: np.ndarray, n_take: int
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Balanced picks (:meth:`_balanced_pick`); NFPF's global top-k RD without balance.
        The history record also gives the clusters of the picks."""
        balance = state.balance
        if balance is None:
            return super()._pick(state, rd, cand, n_take)
        top = self._balanced_pick(rd, balance.labels[cand], balance.own[cand], balance.counts,
                                  balance.sizes, n_take)
        clusters = balance.labels[cand[top]]
        np.add.at(balance.counts, clusters, 1)
        return top, {"clusters": [int(c) for c in clusters]}

    def _balanced_pick(self, rd, lab, dist, counts, sizes, n_take) -> np.ndarray:
        """Indices into the candidates: n_take picks, each from the least-covered cluster."""
        n_clu = counts.size
        # per-cluster score: min-max RD within the cluster's candidates, minus typicality
        score = rd.astype(np.float64).copy()
        if self.typicality_weight > 0:
            order = np.argsort(lab, kind="stable")
            bounds = np.searchsorted(lab[order], np.arange(n_clu + 1))
            for c in range(n_clu):  # loop over clusters, vectorised within
                m = order[bounds[c]:bounds[c + 1]]
                if m.size:
                    score[m] = minmax_normalise(rd[m]) - self.typicality_weight * \
                        minmax_normalise(dist[m])
        # best candidate of each cluster, in score order, via one lexsort
        order = np.lexsort((-score, lab))  # by cluster, then best score first
        bounds = np.searchsorted(lab[order], np.arange(n_clu + 1))
        ptr = bounds[:-1].copy()
        cov = counts.copy()
        picks = []
        for _ in range(n_take):
            key = cov / np.maximum(sizes, 1) if self.balance == "proportional" else cov.copy()
            key[ptr >= bounds[1:]] = np.inf  # clusters with no candidates left
            if not np.isfinite(key).any():
                break
            c = int(np.lexsort((-sizes, key))[0])  # least covered, then the largest
            picks.append(order[ptr[c]])
            ptr[c] += 1
            cov[c] += 1
        if len(picks) < n_take:  # cannot happen while candidates remain; be safe
            rest = np.setdiff1d(np.argsort(-score, kind="stable"), picks, assume_unique=True)
            picks.extend(rest[:n_take - len(picks)].tolist())
        return np.asarray(picks, dtype=np.int64)


def _signature_with_nfpf_parameters() -> inspect.Signature:
    """NFPF+'s constructor signature with NFPF's parameters (but ``faithful``) in place of
    ``**nfpf_params``, as keyword-only ones. It is what ``inspect.signature`` shows, so that
    scikit-learn's ``get_params``, ``set_params``, ``clone`` and ``repr`` and the config
    checks see every parameter NFPF+ takes."""
    own = inspect.signature(NFPFPlus.__init__).parameters
    inherited = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                 for name, parameter in inspect.signature(NFPF.__init__).parameters.items()
                 if name not in own and name not in ("self", "faithful")]
    keep = [parameter for parameter in own.values()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD]
    return inspect.Signature([*keep, *inherited])


NFPFPlus.__init__.__signature__ = _signature_with_nfpf_parameters()
