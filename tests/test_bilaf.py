"""BiLAF's budget split, denoising and boundary picks against hand-made cases and brute force."""

from __future__ import annotations

import numpy as np
import pytest

import nfpf
from nfpf.baselines.bilaf import BiLAF, denoise, split_budget


@pytest.mark.parametrize("seed", range(20))
def test_shares_sum_to_the_budget_within_capacity(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 50, size=rng.integers(1, 12))
    capacity = sizes - 1
    budget = int(rng.integers(0, capacity.sum() + 1))
    shares = split_budget(sizes, budget, capacity)
    assert shares.sum() == budget
    assert np.all(shares <= capacity) and np.all(shares >= 0)


def test_shares_are_proportional_by_largest_remainder():
    np.testing.assert_array_equal(split_budget(np.array([50, 30, 20]), 10, np.full(3, 99)),
                                  [5, 3, 2])
    np.testing.assert_array_equal(split_budget(np.array([1, 1, 1]), 2, np.full(3, 9)), [1, 1, 0])


def test_denoise_drops_the_far_outlier_last():
    X = np.concatenate([np.linspace(0, 1, 19)[:, None], [[50.0]]])
    D = np.abs(X - X.T)
    kept = denoise(D, 0)
    assert kept[0] == 0 and len(kept) == 18 and 19 not in kept


def test_zero_budget_class_does_not_crash_and_picks_are_distinct():
    X = np.random.default_rng(1).normal(size=(300, 6))
    selector = BiLAF(n_cores=10, iterations=20, device="cpu")
    picks = selector.select(X, 14)  # 4 boundary picks over 10 classes: 6 get none
    assert len(set(picks)) == 14
    shares = np.array(selector.info_["boundary_budgets"])
    assert (shares == 0).any() and shares.sum() == 4
    classes = selector.pseudo_labels_[picks]
    assert set(classes) == set(range(10))  # every pseudo-class keeps its core
    np.testing.assert_array_equal(classes, selector.info_["pick_pseudo_class"])
    with pytest.raises(ValueError, match="zero_budget"):
        BiLAF(n_cores=10, iterations=20, zero_budget="raise", device="cpu").select(X, 14)


def test_every_pseudo_class_with_budget_is_covered():
    X = np.random.default_rng(2).normal(size=(400, 5))
    selector = BiLAF(n_cores=8, iterations=20, device="cpu")
    picks = selector.select(X, 40)
    assert len(set(picks)) == 40
    budgets = np.array(selector.info_["boundary_budgets"])
    counts = np.bincount(selector.pseudo_labels_[picks], minlength=8)
    np.testing.assert_array_equal(counts, budgets + 1)


def test_same_seed_same_picks():
    X = np.random.default_rng(3).normal(size=(200, 4))
    a = nfpf.select(X, 20, method="bilaf", seed=4)
    b = BiLAF().select(X, 20, seed=4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("key, value", [("n_cores", 0), ("n_cores", "many"),
                                        ("penalty", 0.5), ("zero_budget", "crash"),
                                        ("denoise_min_size", 0), ("temperature", -1.0)])
def test_bad_options_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        BiLAF(**{key: value})
