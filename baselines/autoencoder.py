"""Shared parts of the gradient-based UAL baselines (DUAL, ALMS).

- :class:`MLPAutoencoder`: the fully connected encoder/decoder both methods put in front of
  their selection block.
- :class:`FullBatchModule`: a LightningModule base that trains on the whole (candidate) pool
  as one batch, in named phases ("pretrain", "joint", ...), and records every epoch's losses.
- :func:`fit_full_batch`: runs one phase with a ``pytorch_lightning.Trainer``.
- :class:`AutoencoderRanker`: the selector base both share: the parameters of the
  autoencoder and its training, their checks, and the ranking of the (candidate) pool by
  the trained model's scores.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.preprocessing import minmax_scale
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nfpf.core.resources import torch_threads
from nfpf.core.selection import (
    Pool,
    RankingSelector,
    candidate_subset,
    candidate_subset_size,
    check_choice,
    check_param,
)
from nfpf.core.trainer import check_one_device, make_trainer, quiet_lightning

__all__ = [
    "AutoencoderRanker",
    "FullBatchModule",
    "MLPAutoencoder",
    "check_hidden_dims",
    "fit_full_batch",
    "minmax",
    "reset_linear_",
    "top_k",
]

log = logging.getLogger(__name__)


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder ``in_dim -> hidden_dims -> latent_dim -> ... -> in_dim``.

    ReLU after every hidden layer; the code (latent) layer and the output layer are linear,
    as in the released DUAL code. The decoder mirrors the encoder.

    Parameters
    ----------
    in_dim : int
        Input dimension d.
    hidden_dims : sequence of int
        Widths of the encoder's hidden layers (the decoder uses them in reverse).
    latent_dim : int
        Dimension of the latent code Z.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], latent_dim: int):
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden_dims], int(latent_dim)]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, x_hat)``: codes of shape (n, latent_dim), reconstructions (n, d)."""
        z = self.encoder(x)
        return z, self.decoder(z)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def reset_linear_(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every ``nn.Linear`` in ``module`` from ``generator``.

    Same distribution as PyTorch's default (Kaiming-uniform weights with a = √5, uniform
    biases in ±1/√fan_in), but drawn from a local generator, so no global seed is involved.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1.0 / math.sqrt(layer.weight.shape[1]) if layer.weight.shape[1] else 0.0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class FullBatchModule(pl.LightningModule):
    """LightningModule base: one optimiser step per epoch on the whole pool, in phases.

    Subclasses implement :meth:`losses` (a dict of scalar tensors whose ``"loss"`` entry is
    minimised) for the phase in ``self.phase`` and set ``self.lrs[phase]``. Every step's
    terms are appended to ``self.history`` as floats, tagged with the phase and epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.phase = "pretrain"
        self.lrs: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.log_every = 0
        self.tag = type(self).__name__

    def losses(self, *batch: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        terms = self.losses(*batch)
        record = {"phase": self.phase, "epoch": int(self.current_epoch)}
        record.update({k: float(v.detach()) for k, v in terms.items()})
        self.history.append(record)
        if self.log_every and (self.current_epoch + 1) % self.log_every == 0:
            log.info("%s %s epoch %d/%d: loss %.6g", self.tag, self.phase,
                     self.current_epoch + 1, self.trainer.max_epochs, record["loss"])
        return terms["loss"]

    def configure_optimizers(self):
        # foreach: one vectorised update for all parameters instead of a Python loop over
        # them (same arithmetic)
        return torch.optim.Adam(self.phase_parameters(), lr=self.lrs[self.phase], foreach=True)

    def phase_parameters(self):
        """Parameters optimised in the current phase (all of them unless overridden)."""
        return self.parameters()


def fit_full_batch(module: FullBatchModule, tensors: Sequence[torch.Tensor], phase: str,
                   epochs: int, trainer: Mapping[str, Any] | None = None,
                   enable_progress_bar: bool = False) -> None:
    """Train ``module`` for ``epochs`` full-batch steps of ``phase`` with a Lightning Trainer.

    The batch is ``tensors`` (rows aligned), delivered whole every epoch; the Trainer moves
    it to the device of the ``trainer`` settings (:func:`nfpf.core.trainer.make_trainer`) and the
    module returns to the CPU afterwards. No logger, no checkpoints; Lightning's start-up
    chatter and the "few workers / few batches" warnings, meaningless for a single full
    batch, are muted for the duration of the call only.
    """
    if epochs <= 0:
        return
    module.phase = phase
    module.log_every = max(1, epochs // 5)
    # One sampler element, the whole slice: every epoch is a single batch taken as views of
    # the tensors, without per-sample indexing and collation (which cost as much as the
    # training steps themselves on small pools). A local generator: the loader's per-epoch
    # base seed would otherwise come from the global RNG (and shift every later global draw
    # in the caller's program).
    loader = DataLoader(TensorDataset(*tensors), sampler=[slice(None)], batch_size=None,
                        generator=torch.Generator().manual_seed(0))
    with quiet_lightning():
        make_trainer(trainer, int(epochs), enable_progress_bar).fit(module, loader)
    module.cpu()


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] with :func:`sklearn.preprocessing.minmax_scale` (all zeros when
    every value is equal, or when a value is not finite)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        return np.zeros_like(values)
    return minmax_scale(values)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties go to the lower index."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:k].astype(np.int64)


def check_hidden_dims(hidden_dims: Any) -> None:
    """Validate a list of hidden-layer widths (an empty list means no hidden layer)."""
    try:
        dims = [h for h in hidden_dims]
        for width in dims:
            check_param("hidden_dims", width, low=1)
    except (TypeError, ValueError):
        raise ValueError(f"hidden_dims must be a list of positive integers; got "
                         f"{hidden_dims!r}.") from None


class AutoencoderRanker(RankingSelector):
    """Base of the autoencoder rankers (DUAL, ALMS): train on the (candidate) pool, rank by
    the trained model's per-sample scores.

    Subclasses store their own parameters and those below, check theirs in
    :meth:`check_params` after calling this one's, and implement :meth:`_train`. The
    ranking does not depend on the budget except through the candidate subset, so a budget
    sweep trains once per seed (see :class:`~nfpf.core.selection.RankingSelector`).

    Parameters shared by the subclasses (besides ``hidden_dims``, ``latent_dim``,
    ``pretrain_epochs``, ``epochs`` and ``lr``, described there):

    Parameters
    ----------
    max_candidates : int or None
        Largest pool trained on directly; above it a seeded random subset of
        ``max(max_candidates, budget)`` samples is used (logged and recorded in
        ``info_["candidate_subset"]``). ``None``: never subsample.
    trainer : mapping, optional
        ``pytorch_lightning.Trainer`` settings of the autoencoder (the ``trainer`` config
        group; ``trainer=gpu`` trains it on the GPU); one device only. CPU when omitted.
    enable_progress_bar : bool
        Show Lightning's progress bar.
    num_threads : int or None
        Torch intra-op threads while training (restored afterwards); ``None`` keeps torch's
        setting. The default 1 keeps the run time predictable on a CPU shared with other
        busy processes, where torch's spinning thread pool collapses (see
        :func:`nfpf.core.resources.torch_threads`); raise it on an idle many-core machine.

    Attributes
    ----------
    info_ : dict
        ``candidate_subset`` (its size, or None), what :meth:`_train` adds, ``final_loss``.
    history_ : list of dict
        One record per epoch: phase, epoch and every loss term.
    scores_ : ndarray of shape (m,)
        Scores of the samples trained on (the candidate subset when one is used).
    candidates_ : ndarray of shape (m,) or None
        Pool indices of the candidate subset, or None.
    """

    hidden_dims: Sequence[int]
    latent_dim: int
    pretrain_epochs: int
    epochs: int
    lr: float
    max_candidates: int | None
    trainer: Mapping[str, Any] | None
    enable_progress_bar: bool
    num_threads: int | None

    def check_params(self) -> None:
        check_hidden_dims(self.hidden_dims)
        check_param("latent_dim", self.latent_dim, low=1)
        check_param("pretrain_epochs", self.pretrain_epochs, low=0)
        check_param("epochs", self.epochs, low=1)
        check_param("lr", self.lr, Real, low=0, closed="neither")
        check_param("max_candidates", self.max_candidates, low=1, also=(None,),
                    hint=" (None: never subsample)")
        check_one_device(self.trainer, type(self).__name__)
        check_choice("enable_progress_bar", self.enable_progress_bar, (True, False))
        check_param("num_threads", self.num_threads, low=1, also=(None,),
                    hint=" (None: torch's setting)")

    def ranking_key(self, n: int, budget: int) -> int:
        """The number of samples ranked: the budget matters only through the subset size."""
        return candidate_subset_size(n, budget, self.max_candidates)

    def _rank(self, pool: Pool, budget: int, seed: int) -> np.ndarray:
        with torch_threads(self.num_threads):
            subset = candidate_subset(pool.n, budget, self.max_candidates, seed,
                                      type(self).__name__)
            X = pool.features if subset is None else pool.features[subset]
            scores, history, info = self._train(X, pool.n_classes, seed)
        self.scores_ = scores
        self.candidates_ = subset
        self.history_ = history
        self.info_ = {"candidate_subset": None if subset is None else int(subset.size), **info,
                      "final_loss": float(history[-1]["loss"]) if history else None}
        order = top_k(scores, scores.size)
        return order if subset is None else subset[order]

    @abstractmethod
    def _train(self, X: np.ndarray, n_classes: int | None, seed: int,
               ) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
        """Train on the rows ``X`` with ``seed``; return their scores, the training history
        and the selector's own ``info_`` entries."""
