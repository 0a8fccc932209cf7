"""Downstream classifiers trained by a Lightning Trainer, with a scikit-learn face.

:class:`LightningClassifier` is a ``BaseEstimator``/``ClassifierMixin`` so that evaluation
treats it like any scikit-learn classifier (``clone``, ``fit``, ``predict``), while training
runs through the ``pytorch_lightning.Trainer`` of the ``trainer`` settings
(:func:`nfpf.core.trainer.make_trainer`: ``trainer=gpu`` moves it to the GPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn
from torch.utils.data import DataLoader

from nfpf.core.trainer import inference_device, make_trainer, quiet_lightning, trainer_settings
from nfpf.deep.distributed import ArrayDataset, DistributedHooks, fit_module

__all__ = ["HeadModule", "LightningClassifier"]


class HeadModule(DistributedHooks, pl.LightningModule):
    """A linear or one-hidden-layer MLP head trained with cross-entropy and Adam.

    ``train_losses`` (one per epoch) returns from ``ddp_spawn`` workers in the extra state.
    """

    logged = ("train_losses",)

    def __init__(self, in_dim: int, n_classes: int, head: str, hidden: int, lr: float,
                 weight_decay: float, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        if head == "linear":
            self.net = nn.Linear(in_dim, n_classes)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_classes))
        self.train_losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False, prog_bar=False)
        return loss

    def on_train_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get("train_loss")
        if value is not None:
            self.train_losses.append(float(value))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)


class LightningClassifier(ClassifierMixin, BaseEstimator):
    """Linear or MLP classifier on features, trained by ``pytorch_lightning.Trainer``.

    Parameters
    ----------
    head : {"linear", "mlp"}
    hidden : int
        Hidden width of the MLP head.
    epochs : int
    lr : float
        Adam learning rate.
    weight_decay : float
    batch_size : int
    trainer : mapping, optional
        ``pytorch_lightning.Trainer`` settings (the ``trainer`` config group: accelerator,
        devices, strategy, precision, ...); CPU, one device, float32 when omitted.
    seed : int
        Seed for weight initialisation and batch order.
    """

    def __init__(self, head: str = "linear", hidden: int = 256, epochs: int = 100,
                 lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 256,
                 trainer: Mapping[str, Any] | None = None, seed: int = 0):
        self.head = head
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.trainer = trainer
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> LightningClassifier:
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp'; got {self.head!r}.")
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        trainer_settings(self.trainer)  # type check
        x = np.asarray(X, dtype=np.float32)
        data = ArrayDataset(x, codes.astype(np.int64))
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(data, batch_size=self.batch_size, shuffle=True, generator=generator)
        torch.manual_seed(self.seed)  # weight init; Lightning has no per-module generator
        self.module_ = HeadModule(x.shape[1], len(self.classes_), self.head, self.hidden,
                                  self.lr, self.weight_decay, self.seed)
        with quiet_lightning():
            trainer = make_trainer(self.trainer, self.epochs, progress=False,
                                   deterministic=True, log_every_n_steps=50)
        fit_module(trainer, self.module_, loader, batch_option="classifier.batch_size")
        self.module_.eval()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self._logits(X).argmax(dim=1).numpy()]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (m, K): the softmax of the head's logits (active learning
        ranks samples by them)."""
        return torch.softmax(self._logits(X), dim=1).numpy()

    @torch.no_grad()
    def _logits(self, X: np.ndarray) -> torch.Tensor:
        """The head's logits (m, K) on the CPU, computed on the trainer's device."""
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        device = inference_device(self.trainer)
        self.module_.to(device)
        return torch.cat([self.module_(chunk.to(device)).float().cpu()
                          for chunk in x.split(8192)])
