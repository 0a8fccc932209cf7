"""Shared parts of the gradient-based UAL baselines (DUAL, ALMS).

- :class:`MLPAutoencoder`: the fully connected encoder/decoder both methods put in front of
  their selection block.
- :class:`FullBatchModule`: a LightningModule base that trains on the whole (candidate) pool
  as one batch, in named phases ("pretrain", "joint", ...), and records every epoch's losses.
- :func:`fit_full_batch`: runs one phase with a ``pytorch_lightning.Trainer``.
- :func:`torch_threads`: a scoped limit on torch's intra-op threads.
- :func:`check_hidden_dims`, :func:`check_positive`: constructor validation helpers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nfpf.core.resources import torch_threads
from nfpf.core.trainer import make_trainer, quiet_lightning

__all__ = [
    "FullBatchModule",
    "MLPAutoencoder",
    "check_hidden_dims",
    "check_positive",
    "fit_full_batch",
    "minmax",
    "reset_linear_",
    "top_k",
    "torch_threads",
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
    """Scale to [0, 1] (all zeros when every value is equal)."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    if not np.isfinite(span) or span <= 0:
        return np.zeros_like(values)
    return (values - values.min()) / span


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties go to the lower index."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:k].astype(np.int64)


def check_hidden_dims(hidden_dims: Any) -> tuple[int, ...]:
    """Validate a list of hidden-layer widths (an empty list means no hidden layer)."""
    try:
        dims = tuple(int(h) for h in hidden_dims)
    except (TypeError, ValueError):
        raise ValueError(f"hidden_dims must be a list of positive integers; got "
                         f"{hidden_dims!r}.") from None
    if any(h < 1 for h in dims):
        raise ValueError(f"hidden_dims must be a list of positive integers; got {list(dims)}.")
    return dims


def check_positive(name: str, value: Any, *, integer: bool = False,
                   allow_zero: bool = False) -> Any:
    """Validate a positive (or non-negative) number and return it as int/float."""
    bad = isinstance(value, bool)
    try:
        number = int(value) if integer else float(value)
        if integer and float(value) != number:
            bad = True
    except (TypeError, ValueError):
        bad = True
        number = 0
    if not bad and (not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero)):
        bad = True
    if bad:
        kind = "integer" if integer else "number"
        allowed = f">= 0 {kind}" if allow_zero else f"positive {kind}"
        raise ValueError(f"{name} must be a {allowed}; got {value!r}.")
    return number
