"""DUAL: loss, scoring, determinism, budgets and the candidate subset, on small data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from nfpf.baselines.dual import DUAL, DUALModule, dual_scores
from nfpf.core.selection import Pool

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector" / "dual.yaml"
SMALL = dict(hidden_dims=(16,), latent_dim=4, pretrain_epochs=20, epochs=25, pretrain_lr=1e-2,
             lr=1e-2)


def blobs(n: int = 60, d: int = 6, k: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    return (centres[np.arange(n) % k] + rng.normal(size=(n, d))).astype(np.float32)


def test_scores_hand_computed():
    c1 = np.array([[0.0, 1.0, 0.0],
                   [2.0, 0.0, 0.0],
                   [0.0, 3.0, 0.0]])
    c2 = np.array([[1.0, 0.0, 1.0],
                   [0.0, 0.0, 1.0]])
    # squared column norms: C1 -> [4, 10, 0] -> minmax [0.4, 1, 0];
    #                       C2 -> [1, 0, 2]  -> minmax [0.5, 0, 1]
    np.testing.assert_allclose(dual_scores(c1, c2), [0.9, 1.0, 1.0])
    # constant columns scale to zero rather than dividing by zero
    np.testing.assert_allclose(dual_scores(np.ones((2, 2)), np.ones((1, 2))), [0.0, 0.0])


def test_joint_loss_matches_independent_formula():
    torch.manual_seed(0)
    n, d, k = 7, 5, 2
    x = torch.randn(n, d)
    module = DUALModule(n, d, (6,), 3, k, sparsity_weight=0.3, expression_weight=2.0,
                        pretrain_lr=1e-3, lr=1e-3, generator=torch.Generator().manual_seed(1))
    module.centers.copy_(torch.randn(k, 3))
    module.phase = "joint"
    got = module.losses(x)
    # independent numpy recomputation (float64), ℓ2,1 as an explicit sum over columns
    to_np = lambda t: t.detach().double().numpy()  # noqa: E731
    lin = [m for m in module.ae.modules() if isinstance(m, torch.nn.Linear)]
    w = [(to_np(m.weight), to_np(m.bias)) for m in lin]
    xn = x.double().numpy()
    z = np.maximum(xn @ w[0][0].T + w[0][1], 0) @ w[1][0].T + w[1][1]
    c1, c2, m = to_np(module.coef), to_np(module.coef_cluster), to_np(module.centers)
    assert np.all(np.diag(c1) == 0)
    zc = c1 @ z
    x_hat = np.maximum(zc @ w[2][0].T + w[2][1], 0) @ w[3][0].T + w[3][1]
    l21 = sum(np.sqrt((c1[:, j] ** 2).sum()) for j in range(n))
    l21 += sum(np.sqrt((c2[:, j] ** 2).sum()) for j in range(n))
    expected = (((x_hat - xn) ** 2).sum() + 0.3 * l21
                + 2.0 * (((zc - z) ** 2).sum() + ((c2 @ z - m) ** 2).sum()))
    assert float(got["loss"].detach()) == pytest.approx(expected, rel=1e-4)


def test_training_loss_decreases_and_diagonal_stays_zero():
    X = blobs()
    sel = DUAL(**SMALL)
    sel.select(X, 5, seed=0)
    pre = [r["loss"] for r in sel.history_ if r["phase"] == "pretrain"]
    joint = [r["loss"] for r in sel.history_ if r["phase"] == "joint"]
    assert len(pre) == SMALL["pretrain_epochs"] and len(joint) == SMALL["epochs"]
    assert pre[-1] < 0.8 * pre[0]
    assert joint[-1] < 0.8 * joint[0]
    assert sel.info_["final_loss"] == pytest.approx(joint[-1])

    module = DUALModule(20, 6, (8,), 3, 2, 1.0, 1.0, 1e-2, 1e-2,
                        torch.Generator().manual_seed(0))
    from nfpf.baselines.autoencoder import fit_full_batch
    fit_full_batch(module, [torch.from_numpy(X[:20])], "joint", 5)
    assert torch.count_nonzero(torch.diagonal(module.coef)) == 0
    assert torch.count_nonzero(module.coef) > 0


def test_deterministic_for_a_seed():
    X = blobs()
    a, b, c = DUAL(**SMALL), DUAL(**SMALL), DUAL(**SMALL)
    ia = a.select(X, 10, seed=3)
    ib = b.select(X, 10, seed=3)
    c.select(X, 10, seed=4)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    assert not np.allclose(a.scores_, c.scores_)  # the seed reaches the initialisation



def test_global_random_state_untouched():
    torch_state = torch.get_rng_state().clone()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 -- the legacy global state
    DUAL(**{**SMALL, "pretrain_epochs": 2, "epochs": 2}).select(blobs(), 4, seed=1)
    assert torch.equal(torch_state, torch.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


@pytest.mark.parametrize("n,budget", [(1, 1), (2, 1), (2, 2), (3, 3), (12, 12), (12, 5)])
def test_exactly_budget_distinct_indices(n, budget):
    X = blobs(n=n, d=3, k=min(n, 2))
    idx = DUAL(hidden_dims=(4,), latent_dim=2, pretrain_epochs=2, epochs=3).select(
        Pool(X, n_classes=4), budget, seed=0)
    assert idx.shape == (budget,) and idx.dtype == np.int64
    assert np.unique(idx).size == budget and idx.min() >= 0 and idx.max() < n
    if budget == n:
        np.testing.assert_array_equal(np.sort(idx), np.arange(n))


def test_candidate_subset_above_limit(caplog):
    X = blobs(n=200)
    sel = DUAL(max_candidates=40, **SMALL)
    with caplog.at_level(logging.INFO, logger="nfpf.core.selection"):
        idx = sel.select(X, 6, seed=7)
    expected = np.sort(np.random.default_rng(7).choice(200, size=40, replace=False))
    np.testing.assert_array_equal(sel.candidates_, expected)
    assert sel.info_["candidate_subset"] == 40 and sel.scores_.shape == (40,)
    assert set(idx) <= set(expected.tolist())
    # the picks are the top-6 candidates by score, mapped back to pool indices
    np.testing.assert_array_equal(idx, expected[np.argsort(-sel.scores_, kind="stable")[:6]])
    assert any("candidate subset of 40" in r.getMessage() for r in caplog.records)

    # a budget above the limit grows the subset to the budget
    big = DUAL(max_candidates=40, **SMALL)
    idx = big.select(X, 50, seed=7)
    assert big.info_["candidate_subset"] == 50 and np.unique(idx).size == 50

    # at or below the limit the whole pool is used
    whole = DUAL(max_candidates=200, **SMALL)
    whole.select(X, 6, seed=7)
    assert whole.info_["candidate_subset"] is None and whole.candidates_ is None


def test_ranking_is_budget_free_and_select_cuts_it():
    X = blobs(n=80)
    ranking = DUAL(**SMALL).rank(X, 5, seed=3)
    assert np.unique(ranking).size == 80  # the whole pool, best first
    for budget in (1, 7, 30):
        np.testing.assert_array_equal(DUAL(**SMALL).select(X, budget, seed=3),
                                      ranking[:budget])
    sel = DUAL(max_candidates=40, **SMALL)
    assert sel.ranking_key(80, 5) == sel.ranking_key(80, 40) == 40
    assert sel.ranking_key(80, 50) == 50 and sel.ranking_key(30, 5) == 30


@pytest.mark.parametrize("kwargs,name", [
    (dict(latent_dim=0), "latent_dim"),
    (dict(epochs=-1), "epochs"),
    (dict(lr=0.0), "lr"),
    (dict(sparsity_weight=-1.0), "sparsity_weight"),
    (dict(hidden_dims=[8, 0]), "hidden_dims"),
    (dict(max_candidates=2.5), "max_candidates"),
    (dict(n_clusters=0), "n_clusters"),
])
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DUAL(**kwargs)


def test_config_matches_class_defaults():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF)
    assert cfg._get_node("trainer")._value() == "${oc.select:trainer,null}"
    cfg.trainer = None  # the file alone: no trainer group to interpolate
    sel = instantiate(cfg)
    assert isinstance(sel, DUAL)
    assert sel.get_params() == DUAL().get_params()


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    DUAL(num_threads=1, **{**SMALL, "pretrain_epochs": 1, "epochs": 1}).select(blobs(), 3)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        DUAL(num_threads=0)
