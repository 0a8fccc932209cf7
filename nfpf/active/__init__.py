"""Supervised active learning: strategies that query labels through an :class:`Oracle`.

The reference rows of a UAL table: how far one-shot, label-free selection is from methods
that see labels between rounds. See :mod:`nfpf.active.base` for the rounds and the per-round
model, :mod:`nfpf.active.strategies` for the strategies.
"""

from nfpf.active.api import make_strategy, select_with_oracle
from nfpf.active.base import ActiveStrategy, round_sizes
from nfpf.active.oracle import LabelBudgetExceededError, Oracle
from nfpf.active.strategies import (
    BADGE,
    CoresetAL,
    Entropy,
    FullPool,
    LeastConfidence,
    Margin,
    PassiveRandom,
)

__all__ = [
    "BADGE",
    "ActiveStrategy",
    "CoresetAL",
    "Entropy",
    "FullPool",
    "LabelBudgetExceededError",
    "LeastConfidence",
    "Margin",
    "Oracle",
    "PassiveRandom",
    "make_strategy",
    "round_sizes",
    "select_with_oracle",
]
