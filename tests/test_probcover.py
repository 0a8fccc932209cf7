"""ProbCover: chunked graph vs dense, incremental greedy vs brute force, the purity rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

import nfpf.baselines.probcover as pc
from nfpf.baselines.probcover import ProbCover, delta_ball_graph, greedy_max_coverage, purity_delta
from nfpf.core.selection import Pool


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _safe_delta(D: np.ndarray, quantile: float) -> float:
    """A radius near the quantile of the distances but far from any of them (no ties)."""
    values = np.unique(D[np.triu_indices_from(D, 1)])
    i = int(quantile * values.size)
    return float((values[i] + values[i + 1]) / 2)


def _brute_greedy(A: np.ndarray, budget: int) -> list[int]:
    """Greedy max coverage recomputed from scratch at every step (ties: lowest index)."""
    covered = np.zeros(len(A), dtype=bool)
    out = []
    for _ in range(budget):
        gain = A[:, ~covered].sum(axis=1)
        if gain.max() == 0:
            break
        node = int(np.argmax(gain))
        covered |= A[node]
        out.append(node)
    return out


def _blobs(n_blobs: int, per_blob: int, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim)) * 5
    X = np.concatenate([c + rng.normal(scale=0.2, size=(per_blob, dim)) for c in centres])
    return X, np.repeat(np.arange(n_blobs), per_blob)


# --- graph ----------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [None, 50, 64, 1])
def test_chunked_graph_equals_dense_including_the_tail_rows(chunk_size):
    X = _unit(np.random.default_rng(0).normal(size=(203, 5)))  # 203 is no multiple of 50/64
    D = cdist(X, X)
    delta = _safe_delta(D, 0.1)
    dense = D < delta
    graph = delta_ball_graph(X, delta, chunk_size=chunk_size)
    np.testing.assert_array_equal(graph.toarray().astype(bool), dense)
    assert graph.diagonal().all()  # every node covers itself
    assert dense[-10:].sum() > 10  # the last rows do have edges


# --- greedy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_greedy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    X = _unit(rng.normal(size=(150, 3)))
    D = cdist(X, X)
    A = D < _safe_delta(D, 0.05)
    ref = _brute_greedy(A, 150)
    got = greedy_max_coverage(sp.csr_matrix(A.astype(np.int8)), len(ref),
                              np.random.default_rng(0))
    np.testing.assert_array_equal(got, ref)


def test_greedy_fills_randomly_after_full_coverage():
    A = np.zeros((12, 12), dtype=bool)
    for block in (range(0, 6), range(6, 12)):  # two cliques: covered by two picks
        A[np.ix_(block, block)] = True
    sel, coverage = greedy_max_coverage(sp.csr_matrix(A.astype(np.int8)), 12,
                                        np.random.default_rng(0), with_coverage=True)
    assert sel[:2].tolist() == [0, 6]
    assert coverage[1] == 12
    assert np.unique(sel).size == 12


def test_probcover_with_given_delta_equals_dense_pipeline():
    X = np.random.default_rng(3).normal(size=(180, 4)) * 3 + 1
    Xn = _unit(X)
    D = cdist(Xn, Xn)
    delta = _safe_delta(D, 0.08)
    ref = _brute_greedy(D < delta, 15)
    sel = ProbCover(delta=delta, chunk_size=37)
    got = sel.select(X, len(ref), seed=0)
    np.testing.assert_array_equal(got, ref)
    assert sel.info_["delta_source"] == "given"
    assert sel.info_["n_edges"] == int((D < delta).sum())


# --- purity rule ----------------------------------------------------------------------------

def _purity(D: np.ndarray, labels: np.ndarray, delta: float) -> float:
    ball = D < delta
    return float((~(ball & (labels[None, :] != labels[:, None]))).all(axis=1).mean())


@pytest.mark.parametrize("alpha", [0.95, 0.8, 1.0])
def test_purity_delta_is_the_largest_pure_enough_radius(alpha):
    rng = np.random.default_rng(4)
    X = _unit(rng.normal(size=(240, 3)))
    labels = KMeans(3, n_init=1, random_state=0).fit_predict(X)
    delta = purity_delta(X, labels, alpha, chunk_size=33)
    D = cdist(X, X)
    # δ* is attained (ball i is pure iff δ <= r_i); 1e-9 absorbs rounding at the boundary.
    assert _purity(D, labels, delta * (1 - 1e-9)) >= alpha
    assert _purity(D, labels, delta * (1 + 1e-9)) < alpha  # any larger δ fails
    # The graph ProbCover builds at δ* has that purity too.
    ball = delta_ball_graph(X, delta).toarray().astype(bool)
    assert (~(ball & (labels[None, :] != labels[:, None]))).all(axis=1).mean() >= alpha
    # Closed form: the floor((1 - alpha) n)-th smallest distance to another cluster.
    other = np.where(labels[None, :] != labels[:, None], D, np.inf).min(axis=1)
    assert delta == pytest.approx(np.sort(other)[int(np.floor((1 - alpha) * 240 + 1e-9))])


@pytest.mark.parametrize("purity_sample", [2000, 150, 3])
def test_purity_rule_selection_equals_exact_delta_and_dense_greedy(purity_sample):
    X, _ = _blobs(4, 120)
    X = X + np.random.default_rng(5).normal(scale=1.5, size=X.shape)  # overlapping blobs
    sel = ProbCover(purity_sample=purity_sample, chunk_size=100)
    got = sel.select(Pool(X, n_classes=4), 10, seed=0)
    Xn = _unit(X)
    labels = KMeans(n_clusters=4, n_init="auto", random_state=0).fit_predict(Xn)
    delta = purity_delta(Xn, labels, 0.95)
    assert sel.info_["delta"] == pytest.approx(delta)
    assert sel.info_["purity"] >= 0.95
    D = cdist(Xn, Xn)
    np.testing.assert_array_equal(got, _brute_greedy(D < delta, 10))


def test_purity_rule_second_pass_when_the_sample_bound_is_too_tight(monkeypatch):
    X, _ = _blobs(3, 100)
    X = X + np.random.default_rng(6).normal(scale=1.5, size=X.shape)
    expected = ProbCover(purity_sample=50).select(Pool(X, n_classes=3), 8, seed=0)
    real = pc._purity_threshold
    calls = []

    def biased(best, alpha):  # the first call (the row sample) returns a far too high bound
        calls.append(1)
        return 1.0 if len(calls) == 1 else real(best, alpha)

    monkeypatch.setattr(pc, "_purity_threshold", biased)
    sel = ProbCover(purity_sample=50)
    got = sel.select(Pool(X, n_classes=3), 8, seed=0)
    assert sel.info_["purity_passes"] == 2
    np.testing.assert_array_equal(got, expected)


# --- behaviour ------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [6, 15])
def test_probcover_covers_every_separated_cluster(budget):
    X, blob = _blobs(6, 50)
    idx = ProbCover().select(Pool(X, n_classes=6), budget, seed=0)
    assert set(blob[idx]) == set(range(6))


@pytest.mark.parametrize("budget", [1, 37, 120])
def test_probcover_exactly_budget_distinct_including_b_equals_n(budget):
    X, _ = _blobs(3, 40)
    sel = ProbCover()
    idx = sel.select(Pool(X, n_classes=3), budget, seed=2)
    assert idx.shape == (budget,) and np.unique(idx).size == budget
    assert idx.min() >= 0 and idx.max() < 120
    if budget == 120:
        assert sel.info_["full_coverage_at"] is not None


def test_probcover_deterministic_for_a_seed():
    X, _ = _blobs(3, 40)
    a = ProbCover().select(Pool(X, n_classes=3), 60, seed=4)
    b = ProbCover().select(Pool(X, n_classes=3), 60, seed=4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("delta", [None, 0.6])
def test_memory_reuses_delta_and_graph_with_identical_picks(tmp_path, delta):
    # purity_sample < n draws from the run's generator before the greedy, and budget 90
    # needs the random fill after full coverage: the cached generator state must be right
    X, _ = _blobs(3, 40)
    pool = Pool(X, n_classes=3)
    params = dict(delta=delta, purity_sample=30)
    for budget in (10, 90):
        expected = ProbCover(**params).select(pool, budget, seed=5)
        sel = ProbCover(**params, memory=str(tmp_path))
        np.testing.assert_array_equal(sel.select(pool, budget, seed=5), expected)
        name = "purity_graph" if delta is None else "graph"
        assert sel.info_["memory_hits"] == ([] if budget == 10 else [name])
    assert sel.info_["full_coverage_at"] is not None
    other = ProbCover(**params, memory=str(tmp_path))
    other.select(pool, 90, seed=6)  # another seed: the purity rule is recomputed
    assert other.info_["memory_hits"] == ([] if delta is None else ["graph"])


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("delta", [0, -0.5, float("nan"), float("inf")])
def test_probcover_rejects_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        ProbCover(delta=delta)


def test_probcover_rejects_delta_above_two_on_normalised_features():
    with pytest.raises(ValueError, match="delta"):
        ProbCover(delta=2.5).select(np.random.default_rng(0).normal(size=(20, 3)), 2)


def test_probcover_bad_input():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ValueError, match="n_classes"):
        ProbCover().select(Pool(X), 3)  # purity rule needs the number of classes
    with pytest.raises(ValueError, match="cannot be met"):
        ProbCover().select(Pool(X, n_classes=1), 3)
    with pytest.raises(ValueError, match="n_classes"):
        ProbCover().select(Pool(X, n_classes=31), 3)
    with pytest.raises(ValueError, match="budget"):
        ProbCover(delta=0.5).select(Pool(X), 31)
    with pytest.raises(ValueError, match="alpha"):
        ProbCover(alpha=0.0)


def test_purity_rule_that_cannot_be_met():
    # Every sample coincides with a sample of another label: no δ > 0 has a pure ball.
    X = _unit(np.random.default_rng(0).normal(size=(10, 3)))
    X = np.concatenate([X, X])
    labels = np.r_[np.zeros(10), np.ones(10)]
    with pytest.raises(ValueError, match="cannot be met"):
        purity_delta(X, labels, 0.95)
    with pytest.raises(ValueError, match="cannot be met"):
        purity_delta(X, np.zeros(20), 0.95)


def test_unnormalised_features_use_plain_euclidean_balls():
    X = np.random.default_rng(8).normal(size=(150, 4)) * 2.0 + 3.0
    D = cdist(X, X)
    delta = _safe_delta(D, 0.05)
    np.testing.assert_array_equal(delta_ball_graph(X, delta, chunk_size=40).toarray() > 0,
                                  D < delta)
    got = ProbCover(delta=delta, normalize=False).select(X, 12)
    np.testing.assert_array_equal(got, _brute_greedy(D < delta, 12))
    labels = KMeans(3, n_init=1, random_state=0).fit_predict(X)
    other = np.where(labels[None, :] != labels[:, None], D, np.inf).min(axis=1)
    assert purity_delta(X, labels, 0.9) == pytest.approx(np.sort(other)[15])


# --- documented choices: open ball, lowest-index ties, normalisation ------------------------

def test_a_pair_at_exactly_delta_is_not_an_edge():
    # Open balls (||x_i - x_j|| < delta, the released code's `<`; a closed ball would join
    # them). Unit vectors at 60 and 180 degrees: distances exactly 1 and 2 in floating point.
    X = np.array([[1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0], [-1.0, 0.0]])
    assert delta_ball_graph(X, 1.0).toarray()[0, 1] == 0
    assert delta_ball_graph(X, 1.0 + 1e-9).toarray()[0, 1] == 1
    assert delta_ball_graph(X, 2.0).toarray()[0, 2] == 0
    np.testing.assert_array_equal(delta_ball_graph(X, 1.0).toarray(), np.eye(3))


def test_equal_coverage_ties_go_to_the_lowest_index():
    # Two tight pairs of unit vectors (10 degrees apart, chord 0.17 < delta = 0.5; the pairs
    # 80 degrees apart): every ball holds 2 samples. Pair members are at indices {1, 3} and
    # {0, 2}; the greedy takes index 0 first, then the lowest index of the other pair, 1.
    angles = np.deg2rad([90.0, 0.0, 100.0, 10.0])
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    np.testing.assert_array_equal(ProbCover(delta=0.5).select(X, 2, seed=0), [0, 1])


def test_normalize_equals_hand_normalised_features_and_keeps_zero_rows_at_the_origin():
    X, _ = _blobs(4, 30)
    X[11] = 0.0  # no direction: stays at the origin, distance 1 from every unit row
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    by_hand = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    D = cdist(by_hand, by_hand)
    delta = _safe_delta(D, 0.1)
    got = ProbCover(delta=delta).select(X, 8, seed=0)
    np.testing.assert_array_equal(got, _brute_greedy(D < delta, 8))
    np.testing.assert_array_equal(
        got, ProbCover(delta=delta, normalize=False).select(by_hand, 8, seed=0))
