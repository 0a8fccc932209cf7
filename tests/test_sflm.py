"""SFLM and RD scores: exactness against the authors' released code
(fixture), scikit-learn Ridge, direct formulas, and streamed vs in-memory fits."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from sklearn.linear_model import Ridge

from nfpf.method.rd import (
    mse_error,
    pearson_error,
    per_sample_error,
    rd_scores,
    reconstruction_difference,
)
from nfpf.method.sflm import SFLM, SFLMState, SFLMStats, draw_weights


def rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def official(fixtures_dir):
    path = fixtures_dir / "nfpf_official_digits.npz"
    if not path.is_file():
        pytest.skip(f"{path.name} not found in {fixtures_dir}")
    return dict(np.load(path))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(4, 12))
    X = centers[rng.integers(0, 4, 300)] + rng.normal(size=(300, 12))
    X[:, 3] = 0.5  # a constant column (range 0 handled like the released code)
    return X


# ----------------------------------------------------------------- the released code
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [8192, 97])
def test_matches_released_code_fixture(official, dtype, batch_size):
    d = official
    X, S, P = d["X"], d["S"], d["P"]
    ref = SFLM(40, "sigmoid", 1, 1e-2, input_weights=d["ref_IW"], bias=d["ref_Bias"],
               faithful=True, dtype=dtype, batch_size=batch_size).fit(X)
    cur = SFLM(11, "sine", 0, 1e-2, input_weights=d["cur_IW"], bias=d["cur_Bias"],
               faithful=True, dtype=dtype, batch_size=batch_size).fit(X[S])
    tol = 1e-4
    assert rel(ref.beta_, d["ref_beta"]) < tol
    assert rel(ref.output_bias_, d["ref_BB"]) < tol
    assert rel(ref.reconstruct(X), d["ref_recon_fit"]) < tol
    assert rel(ref.reconstruct(X[P]), d["ref_recon_pool"]) < tol  # Q1: batch min/max
    assert rel(cur.beta_, d["cur_beta"]) < tol
    assert rel(cur.output_bias_, d["cur_BB"]) < tol
    assert rel(cur.reconstruct(X[S]), d["cur_recon_fit"]) < tol
    assert rel(cur.reconstruct(X[P]), d["cur_recon_pool"]) < tol
    e_ref = ref.errors(X)
    assert rel(e_ref, d["ref_mse"]) < tol
    rec = cur.reconstruct(X[P])
    rd_p = reconstruction_difference(X[P], rec, e_ref[P], "pearson")
    rd_m = reconstruction_difference(X[P], rec, e_ref[P], "mse")
    assert rel(rd_p, d["rd_pearson"]) < tol
    assert rel(rd_m, d["rd_mse"]) < tol
    np.testing.assert_array_equal(P[np.argsort(-rd_p)[:10]], d["top10_pearson"])
    np.testing.assert_array_equal(P[np.argsort(-rd_m)[:10]], d["top10_mse"])
    # streamed per-sample errors equal the errors of the materialised reconstruction
    np.testing.assert_allclose(cur.errors(X, "pearson", rows=P),
                               per_sample_error(X[P], rec, "pearson"), rtol=1e-6, atol=1e-9)


def test_fixed_mode_differs_from_faithful_only_where_documented(official):
    d = official
    X, S, P = d["X"], d["S"], d["P"]
    kw = dict(input_weights=d["cur_IW"], bias=d["cur_Bias"], dtype="float64")
    faithful = SFLM(11, "sine", 0, **kw, faithful=True).fit(X[S])
    fixed = SFLM(11, "sine", 0, **kw).fit(X[S])
    np.testing.assert_allclose(fixed.beta_, faithful.beta_)  # β is the same
    assert fixed.output_bias_.shape == (64,)  # Q2 fix: one bias per output dimension
    assert float(fixed.output_bias_[0]) == pytest.approx(float(faithful.output_bias_))
    # Q1: with the fix a sample's reconstruction does not depend on its batch
    a = fixed.reconstruct(X[P[:50]])[:10]
    b = fixed.reconstruct(X[P[:10]])
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    a = faithful.reconstruct(X[P[:50]])[:10]
    b = faithful.reconstruct(X[P[:10]])
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


# -------------------------------------------------------------- closed-form solve
@pytest.mark.parametrize(("activation", "kind"), [("sigmoid", 1), ("sine", 1), ("sine", 0)])
def test_solve_equals_sklearn_ridge(data, activation, kind):
    C = 0.05
    m = SFLM(30, activation, kind, C, random_state=3, dtype="float64", batch_size=64).fit(data)
    H = m.encode(data, rescale="fit").numpy()
    T = m.targets(data).numpy()
    assert H.min() == pytest.approx(-1.0) and H.max() == pytest.approx(1.0)
    ridge = Ridge(alpha=1.0 / C, fit_intercept=False, solver="cholesky").fit(H, T)
    np.testing.assert_allclose(m.beta_.numpy(), ridge.coef_.T, rtol=1e-8, atol=1e-10)
    # output bias: mean residual of each output dimension (Q2 fixed)
    resid = H @ m.beta_.numpy() - T
    np.testing.assert_allclose(m.output_bias_.numpy(), resid.mean(0), rtol=1e-8, atol=1e-10)
    # reconstruction: inverse target rescaling of g'(Hβ - bias)
    Y = H @ m.beta_.numpy() - m.output_bias_.numpy()
    if kind == 0:
        Y = np.sin(Y)
    lo, hi = m.target_min_.numpy(), m.target_max_.numpy()
    span = np.where(hi - lo == 0, 1.0, hi - lo)
    np.testing.assert_allclose(m.reconstruct(data).numpy(), (Y + 1) / 2 * span + lo,
                               rtol=1e-9, atol=1e-9)


def test_faithful_output_bias_is_first_dimension_scalar(data):
    m = SFLM(20, "sigmoid", 1, random_state=0, dtype="float64", faithful=True).fit(data)
    H = m.encode(data, rescale="fit").numpy()
    resid = H @ m.beta_.numpy() - m.targets(data).numpy()
    assert m.output_bias_.ndim == 0
    assert float(m.output_bias_) == pytest.approx(resid[:, 0].mean(), rel=1e-9)


def test_two_epochs_equal_two_explicit_fits(data):
    m2 = SFLM(15, "sigmoid", 1, random_state=1, dtype="float64", epochs=2).fit(data)
    m1 = SFLM(15, "sigmoid", 1, random_state=1, dtype="float64").fit(data)
    b = float(m1.output_bias_.mean())
    again = SFLM(15, "sigmoid", 1, input_weights=m1.beta_.numpy(), bias=np.full(15, b),
                 dtype="float64").fit(data)
    np.testing.assert_allclose(m2.beta_, again.beta_, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------- streaming
@pytest.mark.parametrize(("activation", "kind"), [("sigmoid", 1), ("sine", 0)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_streamed_fit_equals_one_batch_fit(data, activation, kind, dtype):
    one = SFLM(25, activation, kind, random_state=2, dtype=dtype, batch_size=10_000).fit(data)
    many = SFLM(25, activation, kind, random_state=2, dtype=dtype, batch_size=23).fit(data)
    tol = 1e-9 if dtype == "float64" else 2e-4
    assert rel(many.beta_, one.beta_) < tol
    assert rel(many.reconstruct(data), one.reconstruct(data)) < tol
    # the float32 fit agrees with the float64 one
    exact = SFLM(25, activation, kind, random_state=2, dtype="float64").fit(data)
    assert rel(many.reconstruct(data), exact.reconstruct(data)) < (1e-9 if dtype == "float64"
                                                                   else 1e-3)


def test_partial_fit_protocol(data):
    m = SFLM(10, "sine", 0, random_state=0, dtype="float64")
    passes = 0
    while True:
        for s in range(0, len(data), 50):
            m.partial_fit(torch.from_numpy(data[s:s + 50]))
        passes += 1
        if m.end_pass():
            break
    assert passes == m.n_passes == 2  # type 0: a min/max pass, then the sums
    ref = SFLM(10, "sine", 0, random_state=0, dtype="float64").fit(data)
    np.testing.assert_allclose(m.beta_, ref.beta_, rtol=1e-10, atol=1e-12)


def test_stats_merge_equals_full(data):
    def stats(part):
        m = SFLM(12, "sigmoid", 1, random_state=5, dtype="float64", batch_size=1000)
        m.partial_fit(part)
        return m, m.pass_statistics()

    _, full = stats(data)
    _, a = stats(data[:100])
    _, b = stats(data[100:])
    a.merge(b)
    assert a.n == full.n
    a.reshift(full.shift_h, full.shift_t)
    for name in ("sum_h", "sum_t", "gram", "cross", "h_min", "h_max", "x_min", "x_max"):
        np.testing.assert_allclose(getattr(a, name), getattr(full, name), rtol=1e-10,
                                   atol=1e-9, err_msg=name)


class _ThreadReducer:
    """In-process stand-in for torch.distributed: one instance per simulated rank."""

    def __init__(self, rank: int, shared: dict, barrier: threading.Barrier) -> None:
        self.rank, self.shared, self.barrier = rank, shared, barrier

    def _exchange(self, tensor):
        self.barrier.wait()
        self.shared[self.rank] = tensor.clone()
        self.barrier.wait()
        values = [self.shared[r] for r in sorted(self.shared)]
        self.barrier.wait()
        return values

    def all_reduce(self, tensor, op):
        values = torch.stack(self._exchange(tensor))
        return {"sum": values.sum(0), "min": values.amin(0), "max": values.amax(0)}[op]

    def broadcast(self, tensor):
        return self._exchange(tensor)[0]


@pytest.mark.parametrize(("activation", "kind"), [("sigmoid", 1), ("sine", 0)])
def test_all_reduced_fit_over_shards_equals_in_memory(data, activation, kind):
    shards = [data[:70], data[70:200], data[200:]]
    barrier, shared = threading.Barrier(len(shards)), {}
    models = [SFLM(18, activation, kind, random_state=4, dtype="float64") for _ in shards]
    errors = []

    def worker(rank):
        try:
            m, reducer = models[rank], _ThreadReducer(rank, shared, barrier)
            while True:
                for s in range(0, len(shards[rank]), 32):
                    m.partial_fit(shards[rank][s:s + 32])
                if m.end_pass(reducer):
                    break
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    ref = SFLM(18, activation, kind, random_state=4, dtype="float64").fit(data)
    for m in models:
        assert m.n_samples_seen_ == len(data)
        np.testing.assert_allclose(m.beta_, ref.beta_, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(m.output_bias_, ref.output_bias_, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(("activation", "kind"), [("sigmoid", 1), ("sine", 0)])
def test_lightning_streamed_fit_equals_in_memory(data, activation, kind):
    from torch.utils.data import DataLoader, TensorDataset

    from nfpf.method.sflm_module import fit_sflm

    loader = DataLoader(TensorDataset(torch.from_numpy(data), torch.zeros(len(data))),
                        batch_size=64)
    streamed = fit_sflm(SFLM(20, activation, kind, random_state=9, dtype="float64"), loader,
                        accelerator="cpu", devices=1)
    ref = SFLM(20, activation, kind, random_state=9, dtype="float64").fit(data)
    assert streamed.n_samples_seen_ == len(data)
    np.testing.assert_allclose(streamed.beta_, ref.beta_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.errors(data), ref.errors(data), rtol=1e-10)


# Two-process DDP over gloo: tests/test_scale.py::test_sflm_ddp_two_processes_equals_one
# runs on every CI run.


# ------------------------------------------------------------------------ weights
@pytest.mark.parametrize(("L", "d"), [(5, 12), (12, 12), (30, 12)])
def test_default_weights_like_scipy_orth(L, d):
    W, b = draw_weights(L, d, np.random.default_rng(0))
    raw = np.random.default_rng(0).uniform(-1, 1, size=(L, d))
    assert W.shape == (L, d)
    if L <= d:  # orthonormal rows spanning raw's row space
        np.testing.assert_allclose(W @ W.T, np.eye(L), atol=1e-12)
        Q = scipy.linalg.orth(raw.T)
        np.testing.assert_allclose(W.T @ W, Q @ Q.T, atol=1e-10)
    else:  # orthonormal columns spanning raw's column space
        np.testing.assert_allclose(W.T @ W, np.eye(d), atol=1e-12)
        Q = scipy.linalg.orth(raw)
        np.testing.assert_allclose(W @ W.T, Q @ Q.T, atol=1e-10)
    assert np.linalg.norm(b) == pytest.approx(1.0) and (b >= 0).all()
    W2, b2 = draw_weights(L, d, np.random.default_rng(0))
    np.testing.assert_array_equal(W, W2)
    np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize(("L", "d"), [(5, 12), (12, 12), (30, 12)])
def test_qr_weights_same_span_other_basis(L, d):
    """The QR option: orthonormal, the same span as the SVD draw (so the same raw draw),
    the unique basis with a positive diagonal of R, and different weights."""
    W, b = draw_weights(L, d, np.random.default_rng(0), "qr")
    W_svd, b_svd = draw_weights(L, d, np.random.default_rng(0))
    raw = np.random.default_rng(0).uniform(-1, 1, size=(L, d))
    np.testing.assert_array_equal(b, b_svd)
    a = raw.T if L <= d else raw  # the matrix whose column space is orthonormalised
    Q = W.T if L <= d else W
    k = min(L, d)
    np.testing.assert_allclose(Q.T @ Q, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(Q @ Q.T, scipy.linalg.orth(a) @ scipy.linalg.orth(a).T,
                               atol=1e-10)
    R = Q.T @ a  # a = Q R: upper triangular with a positive diagonal
    np.testing.assert_allclose(np.tril(R, -1), 0, atol=1e-10)
    assert (np.diag(R) > 0).all()
    assert not np.allclose(W, W_svd)
    np.testing.assert_array_equal(W, draw_weights(L, d, np.random.default_rng(0), "qr")[0])


def test_orthonormalisation_option_reaches_the_weights(data):
    qr = SFLM(10, random_state=3, orthonormalisation="qr").fit(data)
    W, _ = draw_weights(10, data.shape[1], np.random.default_rng(3), "qr")
    np.testing.assert_allclose(qr.input_weights_.double().numpy(), W, rtol=1e-6, atol=1e-7)
    svd = SFLM(10, random_state=3).fit(data)
    assert not np.allclose(qr.beta_, svd.beta_)
    with pytest.raises(ValueError, match="orthonormalisation must be one of"):
        SFLM(10, orthonormalisation="gram-schmidt")
    with pytest.raises(ValueError, match="orthonormalisation must be one of"):
        draw_weights(3, 4, np.random.default_rng(0), "eig")


def test_random_state_reproducible(data):
    a = SFLM(10, random_state=7).fit(data)
    b = SFLM(10, random_state=7).fit(data)
    c = SFLM(10, random_state=8).fit(data)
    np.testing.assert_array_equal(a.beta_, b.beta_)
    assert not np.allclose(a.beta_, c.beta_)


# --------------------------------------------------------------------- RD scores
def test_rd_scores_against_direct_formulas():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 15))
    R = X + rng.normal(scale=0.5, size=X.shape)
    expected = np.array([1 - scipy.stats.pearsonr(x, r)[0] for x, r in zip(X, R, strict=True)])
    np.testing.assert_allclose(pearson_error(X, R), expected, rtol=1e-12)
    np.testing.assert_allclose(mse_error(X, R), ((X - R) ** 2).mean(1), rtol=1e-12)
    e_ref = rng.random(40)
    norm = (e_ref - e_ref.min()) / (e_ref.max() - e_ref.min())
    np.testing.assert_allclose(reconstruction_difference(X, R, e_ref, "pearson"),
                               expected - norm, rtol=1e-12)
    np.testing.assert_allclose(rd_scores(mse_error(X, R), e_ref, "mse"),
                               ((X - R) ** 2).mean(1) - e_ref, rtol=1e-12)
    # a reference error already normalised (over the pool) is used as given
    np.testing.assert_allclose(rd_scores(expected, e_ref, "pearson", normalise_ref=False),
                               expected - e_ref, rtol=1e-12)
    # float32 inputs: same scores to float32 precision
    np.testing.assert_allclose(pearson_error(X.astype(np.float32), R.astype(np.float32)),
                               expected, rtol=1e-4, atol=1e-6)


def test_rd_constant_sample_is_not_nan():
    X = np.vstack([np.ones(6), np.arange(6.0)])
    R = np.vstack([np.arange(6.0), np.full(6, 2.0)])
    out = pearson_error(X, R)
    np.testing.assert_array_equal(out, [1.0, 1.0])
    assert np.isfinite(rd_scores(out, np.array([0.3, 0.3]), "pearson")).all()


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_hidden=0), "n_hidden"),
        (dict(n_hidden=-3), "n_hidden"),
        (dict(n_hidden=2.5), "n_hidden"),
        (dict(C=0.0), "C must be"),
        (dict(C=-1.0), "C must be"),
        (dict(C=float("nan")), "C must be"),
        (dict(activation="relu"), "activation must be one of"),
        (dict(type=2), "type must be an integer in"),
        (dict(activation="sigmoid", type=0), "undefined"),
        (dict(epochs=0), "epochs"),
        (dict(dtype="float16"), "dtype"),
        (dict(n_hidden=4, input_weights=np.zeros((3, 5))), "input_weights"),
        (dict(n_hidden=4, bias=np.zeros(5)), "bias"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SFLM(**kwargs)


def test_bad_data(data):
    bad = data.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SFLM(10).fit(bad)
    with pytest.raises(ValueError, match="features"):
        SFLM(4, input_weights=np.zeros((4, 5))).fit(data)
    with pytest.raises(RuntimeError, match="not fitted"):
        SFLM(4).reconstruct(data)
    with pytest.raises(ValueError, match="2-D"):
        SFLM(4).fit(data[0])


def test_stats_dataclass_is_empty_by_default():
    assert SFLMStats().n == 0


# ------------------------------------------------------------- batches side by side
@pytest.mark.parametrize(("activation", "kind", "faithful", "epochs"),
                         [("sigmoid", 1, False, 1), ("sine", 0, True, 2)])
def test_results_do_not_depend_on_n_jobs(data, activation, kind, faithful, epochs):
    """fit/errors compute batches side by side, each single-threaded, and add them in batch
    order: the same bits for every n_jobs, hence for every machine's core count."""
    def fitted(n_jobs):
        return SFLM(25, activation, kind, epochs=epochs, faithful=faithful, random_state=3,
                    batch_size=23, n_jobs=n_jobs).fit(data)

    base, others = fitted(1), [fitted(2), fitted(4)]
    for m in others:
        assert torch.equal(m.beta_, base.beta_)
        assert torch.equal(m.output_bias_, base.output_bias_)
        for err in ("mse", "pearson"):
            for rescale in ("fit", "batch"):
                np.testing.assert_array_equal(m.errors(data, err, rescale),
                                              base.errors(data, err, rescale))
        rows = np.array([5, 200, 7, 299, 0])
        np.testing.assert_array_equal(m.errors(data, rows=rows), base.errors(data, rows=rows))
        np.testing.assert_allclose(m.errors(data, rescale="fit", rows=rows),
                                   base.errors(data, rescale="fit")[rows], rtol=1e-5)
    # the same batches fed through the streaming protocol give the same fit (to rounding:
    # that path uses torch's own threads)
    stream = SFLM(25, activation, kind, epochs=epochs, faithful=faithful, random_state=3)
    while True:
        for s in range(0, len(data), 23):
            stream.partial_fit(data[s:s + 23])
        if stream.end_pass():
            break
    assert rel(stream.beta_, base.beta_) < 2e-4


def test_fit_restores_thread_settings(data):
    before = torch.get_num_threads()
    SFLM(20, random_state=0, batch_size=50, n_jobs=2).fit(data).errors(data)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("n_jobs", [0, -1, 1.5, True])
def test_bad_n_jobs(n_jobs):
    with pytest.raises(ValueError, match="n_jobs"):
        SFLM(10, n_jobs=n_jobs)


def test_row_view_is_read_in_batches_with_the_same_numbers(data):
    """A FloatRows view (the file-backed pool of NFPF) is fitted and scored batch by batch,
    never np.asarray-ed whole, with the numbers of the in-memory array."""
    from nfpf.method.rows import FloatRows

    class CountingRows(FloatRows):
        def __init__(self, array):
            super().__init__(array)
            self.reads = []

        def __getitem__(self, key):
            out = super().__getitem__(key)
            self.reads.append(len(out))
            return out

    rows = CountingRows(data.astype(np.float32))
    viewed = SFLM(12, random_state=0, batch_size=50, n_jobs=1).fit(rows)
    plain = SFLM(12, random_state=0, batch_size=50, n_jobs=1).fit(data.astype(np.float32))
    np.testing.assert_array_equal(viewed.beta_, plain.beta_)
    np.testing.assert_array_equal(viewed.errors(rows), plain.errors(data.astype(np.float32)))
    assert max(rows.reads) <= 50 < len(data)


# ------------------------------------------------------------------ fitted state
def same_outputs(a: SFLM, b: SFLM, X) -> None:
    """``a`` and ``b`` encode, reconstruct and score ``X`` bit for bit alike."""
    assert torch.equal(a.encode(X), b.encode(X))
    assert torch.equal(a.reconstruct(X), b.reconstruct(X))
    assert torch.equal(a.targets(X), b.targets(X))
    for kind in ("mse", "pearson"):
        np.testing.assert_array_equal(a.errors(X, kind), b.errors(X, kind))
        np.testing.assert_array_equal(a.errors(X, kind, rescale="batch", rows=np.arange(40)),
                                      b.errors(X, kind, rescale="batch", rows=np.arange(40)))


@pytest.mark.parametrize(("activation", "kind", "faithful", "epochs", "dtype"),
                         [("sigmoid", 1, False, 1, "float32"), ("sine", 0, True, 2, "float64"),
                          ("sine", 1, False, 2, "float32")])
def test_exported_state_loads_into_an_sflm_that_computes_the_same_bits(
        data, activation, kind, faithful, epochs, dtype):
    fitted = SFLM(17, activation, kind, epochs=epochs, faithful=faithful, random_state=6,
                  dtype=dtype, batch_size=50).fit(data)
    state = fitted.export_state()
    assert isinstance(state, SFLMState) and state.n_samples_seen == len(data)
    assert (state.activation, state.type, state.dtype) == (activation, kind, dtype)
    assert state.input_weights.shape == (17, data.shape[1]) and state.beta.dtype == torch.float64
    loaded = SFLM.from_state(state, faithful=faithful, batch_size=50)
    assert loaded.is_fitted and loaded.n_hidden == 17
    same_outputs(fitted, loaded, data)
    # the state is a copy: changing it changes neither model
    state.beta.zero_()
    assert torch.equal(loaded.beta_, fitted.beta_) and fitted.beta_.abs().max() > 0
    # loading into a configured SFLM (as the Lightning module does) is the same
    into = SFLM(17, activation, kind, epochs=epochs, faithful=faithful, dtype=dtype,
                batch_size=50).load_state(fitted.export_state())
    same_outputs(fitted, into, data)


def test_a_state_is_refused_by_an_sflm_of_other_parameters(data):
    state = SFLM(9, "sigmoid", 1, random_state=0).fit(data).export_state()
    with pytest.raises(ValueError, match=r"^the state was fitted with activation='sigmoid' "
                                         r"but this SFLM has activation='sine'"):
        SFLM(9, "sine", 1).load_state(state)
    with pytest.raises(ValueError, match="n_hidden=9 but this SFLM has n_hidden=8"):
        SFLM(8).load_state(state)
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"^SFLMState.beta has shape \(9, 3\)"):
        SFLM.from_state(replace(state, beta=state.beta[:, :3]))
    with pytest.raises(RuntimeError, match="not fitted"):
        SFLM(9).export_state()
    assert not hasattr(SFLM(9), "beta_")  # fitted attributes exist only after a fit


def test_the_lightning_module_carries_the_state_in_its_state_dict(data, tmp_path):
    """The fit comes back from ddp_spawn workers as the module's state dict: saved with
    torch.save and read with torch.load(weights_only=True), it gives a module whose SFLM
    computes the same bits."""
    from torch.utils.data import DataLoader, TensorDataset

    from nfpf.method.sflm_module import SFLMModule, fit_sflm

    loader = DataLoader(TensorDataset(torch.from_numpy(data)), batch_size=64)
    fitted = fit_sflm(SFLM(14, "sine", 0, random_state=2), loader, accelerator="cpu",
                      devices=1)
    module = SFLMModule(fitted)
    torch.save(module.state_dict(), tmp_path / "module.pt")
    received = SFLMModule(n_hidden=14, activation="sine", type=0)
    received.load_state_dict(torch.load(tmp_path / "module.pt", weights_only=True))
    same_outputs(fitted, received.sflm, data)
    # an unfitted module's state dict makes an SFLM unfitted
    received.load_state_dict(SFLMModule(n_hidden=14, activation="sine", type=0).state_dict())
    assert not received.sflm.is_fitted


@pytest.mark.parametrize(("activation", "kind"), [("sigmoid", 1), ("sine", 0)])
def test_all_reduced_fits_export_one_state(data, activation, kind):
    """Three simulated processes end with the same state, bit for bit, and a model loaded
    from it computes what each of them computes."""
    shards = [data[:70], data[70:200], data[200:]]
    barrier, shared = threading.Barrier(len(shards)), {}
    models = [SFLM(18, activation, kind, random_state=4) for _ in shards]

    def worker(rank):
        m, reducer = models[rank], _ThreadReducer(rank, shared, barrier)
        while True:
            m.partial_fit(shards[rank])
            if m.end_pass(reducer):
                break

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    states = [m.export_state() for m in models]
    for state in states[1:]:
        for name, tensor in state.tensors().items():
            assert torch.equal(tensor, states[0].tensors()[name]), name
    loaded = SFLM.from_state(states[0])
    for m in models:
        same_outputs(m, loaded, data)
