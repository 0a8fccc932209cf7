"""ALMS: the sketch, the loss, scoring, determinism, budgets and the candidate subset."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from nfpf.baselines.alms import ALMS, ALMSModule, alms_scores, frequent_directions, noisy_copies
from nfpf.core.selection import Pool

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector" / "alms.yaml"
SMALL = dict(hidden_dims=(16,), latent_dim=6, sketch_size=8, pretrain_epochs=15, epochs=15,
             lr=1e-2)
TINY = dict(hidden_dims=(4,), latent_dim=2, sketch_size=3, pretrain_epochs=2, epochs=3)


def blobs(n: int = 60, d: int = 6, k: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    return (centres[np.arange(n) % k] + rng.normal(size=(n, d))).astype(np.float32)


def fd_row_by_row(a: np.ndarray, ell: int) -> np.ndarray:
    """Textbook Frequent Directions: insert one row at a time, shrink when the buffer is full."""
    b = np.zeros((ell, a.shape[1]))
    for row in a:
        free = np.flatnonzero(~b.any(axis=1))
        b[free[0]] = row
        if free.size == 1:
            _, s, vt = np.linalg.svd(b, full_matrices=False)
            delta = s[ell // 2] ** 2 if ell // 2 < s.size else 0.0
            b = np.zeros_like(b)
            b[: s.size] = np.sqrt(np.maximum(s ** 2 - delta, 0.0))[:, None] * vt
    return b


@pytest.mark.parametrize("ell", [2, 5, 8, 13])
def test_frequent_directions_matches_row_by_row_and_bound(ell):
    rng = np.random.default_rng(ell)
    a = rng.normal(size=(97, 10)) @ rng.normal(size=(10, 10))
    b = frequent_directions(torch.from_numpy(a), ell).numpy()
    ref = fd_row_by_row(a, ell)
    assert b.shape == (ell, 10)
    # same sketch up to an orthogonal mixing of its rows: compare the Gram matrices
    np.testing.assert_allclose(b.T @ b, ref.T @ ref, rtol=1e-8, atol=1e-6)
    gap = a.T @ a - b.T @ b
    assert np.linalg.eigvalsh(gap).min() > -1e-6  # BᵀB ⪯ AᵀA
    assert np.linalg.norm(gap, 2) <= (a ** 2).sum() / (ell - ell // 2) + 1e-6


def test_frequent_directions_exact_when_it_never_has_to_shrink():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 4))
    b = frequent_directions(torch.from_numpy(a), 10).numpy()  # n < ℓ: the rows themselves
    np.testing.assert_allclose(b[:7], a)
    np.testing.assert_allclose(b[7:], 0.0)
    tall = rng.normal(size=(50, 3))  # rank 3 <= ⌊ℓ/2⌋: nothing is ever shrunk away
    bt = frequent_directions(torch.from_numpy(tall), 8).numpy()
    np.testing.assert_allclose(bt.T @ bt, tall.T @ tall, rtol=1e-8)


def test_noisy_copies_have_the_requested_snr():
    x = np.random.default_rng(0).uniform(size=(400, 30))
    fake = noisy_copies(x, 5.0, np.random.default_rng(1))
    noise = fake - x
    snr = 10 * np.log10((x ** 2).mean() / noise.var())
    assert snr == pytest.approx(5.0, abs=0.01)
    assert abs(noise.mean()) < 1e-6


def test_scores_hand_computed():
    q = np.array([[1.0, -2.0],
                  [0.5, 0.5],
                  [-3.0, 0.0]])
    np.testing.assert_allclose(alms_scores(q, "sum"), [-1.0, 1.0, -3.0])
    np.testing.assert_allclose(alms_scores(q, "max_abs"), [2.0, 0.5, 3.0])
    with pytest.raises(ValueError, match="score"):
        alms_scores(q, "mean")


def test_joint_loss_matches_independent_formula():
    torch.manual_seed(0)
    n, d, ell = 9, 5, 4
    x, fake = torch.randn(n, d), torch.randn(n, d)
    module = ALMSModule(n, d, (6,), 3, ell, alpha=0.1, beta=1.5, gamma=0.01, lam=10.0,
                        pretrain_lr=1e-3, lr=5e-4, generator=torch.Generator().manual_seed(2))
    module.phase = "joint"
    got = float(module.losses(x, fake)["loss"].detach())
    to_np = lambda t: t.detach().double().numpy()  # noqa: E731
    lin = [m for m in module.ae.modules() if isinstance(m, torch.nn.Linear)]
    w = [(to_np(m.weight), to_np(m.bias)) for m in lin]
    enc = lambda v: np.maximum(v @ w[0][0].T + w[0][1], 0) @ w[1][0].T + w[1][1]  # noqa: E731
    dec = lambda v: np.maximum(v @ w[2][0].T + w[2][1], 0) @ w[3][0].T + w[3][1]  # noqa: E731
    xn, fn, q = x.double().numpy(), fake.double().numpy(), to_np(module.q)
    z = enc(xn)
    x_hat = dec(z)
    # the sketch itself is checked against the row-by-row algorithm above; here it is the
    # target, and SVD sign conventions differ between LAPACK builds, so take the module's
    s = frequent_directions(torch.from_numpy(z), ell).numpy()

    def ce(v, label):  # mean cross-entropy of the real/fake head
        logits = v @ to_np(module.head.weight).T + to_np(module.head.bias)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -logp[:, label].mean()

    sketch_term = ((s - q.T @ z) ** 2).sum()
    penalty = sum(np.abs(q[i]).max() for i in range(n))
    expected = (1.5 * (sketch_term + 10.0 * penalty) + ((x_hat - xn) ** 2).sum()
                + 0.01 * ((z - enc(x_hat)) ** 2).sum() + 0.1 * (ce(z, 1) + ce(enc(fn), 0)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_training_loss_decreases():
    sel = ALMS(**{**SMALL, "epochs": 30})
    sel.select(blobs(), 5, seed=0)
    pre = [r["loss"] for r in sel.history_ if r["phase"] == "pretrain"]
    joint = [r["loss"] for r in sel.history_ if r["phase"] == "joint"]
    assert len(pre) == SMALL["pretrain_epochs"] and len(joint) == 30
    assert pre[-1] < 0.8 * pre[0]
    assert joint[-1] < 0.8 * joint[0]
    assert sel.info_["final_loss"] == pytest.approx(joint[-1])


def test_deterministic_for_a_seed():
    X = blobs()
    a, b, c = ALMS(**SMALL), ALMS(**SMALL), ALMS(**SMALL)
    ia = a.select(X, 10, seed=3)
    ib = b.select(X, 10, seed=3)
    c.select(X, 10, seed=4)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    assert not np.allclose(a.scores_, c.scores_)  # the seed reaches init and noise



def test_global_random_state_untouched():
    torch_state = torch.get_rng_state().clone()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 -- the legacy global state
    ALMS(**{**SMALL, "pretrain_epochs": 2, "epochs": 2}).select(blobs(), 4, seed=1)
    assert torch.equal(torch_state, torch.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


@pytest.mark.parametrize("n,budget", [(1, 1), (2, 1), (2, 2), (3, 3), (12, 12), (12, 5)])
def test_exactly_budget_distinct_indices(n, budget):
    X = blobs(n=n, d=3, k=min(n, 2))
    idx = ALMS(**TINY).select(Pool(X), budget, seed=0)
    assert idx.shape == (budget,) and idx.dtype == np.int64
    assert np.unique(idx).size == budget and idx.min() >= 0 and idx.max() < n
    if budget == n:
        np.testing.assert_array_equal(np.sort(idx), np.arange(n))


def test_zero_rows_are_allowed():
    X = blobs(n=20)
    X[3] = 0.0  # row normalisation must not divide by zero
    idx = ALMS(**TINY).select(X, 20, seed=0)
    np.testing.assert_array_equal(np.sort(idx), np.arange(20))


def test_candidate_subset_above_limit(caplog):
    X = blobs(n=200)
    sel = ALMS(max_candidates=40, **SMALL)
    with caplog.at_level(logging.INFO, logger="nfpf.core.selection"):
        idx = sel.select(X, 6, seed=7)
    expected = np.sort(np.random.default_rng(7).choice(200, size=40, replace=False))
    np.testing.assert_array_equal(sel.candidates_, expected)
    assert sel.info_["candidate_subset"] == 40 and sel.scores_.shape == (40,)
    np.testing.assert_array_equal(idx, expected[np.argsort(-sel.scores_, kind="stable")[:6]])
    assert any("candidate subset of 40" in r.getMessage() for r in caplog.records)

    big = ALMS(max_candidates=40, **SMALL)
    idx = big.select(X, 50, seed=7)
    assert big.info_["candidate_subset"] == 50 and np.unique(idx).size == 50


@pytest.mark.parametrize("kwargs,name", [
    (dict(sketch_size=0), "sketch_size"),
    (dict(lam=-1.0), "lam"),
    (dict(score="median"), "score"),
    (dict(snr_db="loud"), "snr_db"),
    (dict(pretrain_epochs=-2), "pretrain_epochs"),
    (dict(hidden_dims="wide"), "hidden_dims"),
])
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ALMS(**kwargs)


def test_config_matches_class_defaults():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF)
    assert cfg._get_node("trainer")._value() == "${oc.select:trainer,null}"
    cfg.trainer = None  # the file alone: no trainer group to interpolate
    sel = instantiate(cfg)
    assert isinstance(sel, ALMS)
    assert sel.get_params() == ALMS().get_params()
