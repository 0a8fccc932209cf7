"""ResNet-18 downstream classifier: the training recipe of the released NFPF code.

Recipe: torchvision ResNet-18 (ImageNet weights when asked for), first
conv replaced by 3×3 stride 1, max-pool removed, head Dropout(0.5) + Linear(512, K); SGD
lr 0.01, momentum 0.9, weight decay 5e-4, cosine schedule over the epochs (100), batch 128;
random crop (padding 4) + horizontal flip; inputs normalised with mean 0.5, std 0.5;
accuracy on the test set at the best and the last epoch.

:class:`ResNetClassifier` gives it a scikit-learn face (``fit``/``predict``, ``clone``-able)
with ``uses_images = True``, so :func:`nfpf.evaluation.pipeline.run` hands it the [0, 1]
images of the selected samples rather than features. Training runs through
``pytorch_lightning.Trainer`` with the configured accelerator / devices / strategy / precision.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from nfpf.core.device import gpu_memory_guard
from nfpf.core.rng import seeded
from nfpf.core.trainer import inference_device, make_trainer, quiet_lightning, trainer_settings
from nfpf.deep.augment import random_crop_flip
from nfpf.deep.backbones import resnet18_backbone
from nfpf.deep.distributed import (
    ArrayDataset,
    DistributedHooks,
    batch_order,
    broadcast_buffers,
    count_correct,
    describe_batch,
    fit_module,
    per_device_batch,
    sum_over_ranks,
)
from nfpf.deep.tensors import as_image_tensor, fit_normalization, normalize, to_channels
from nfpf.deep.weights import resolve_weights

__all__ = ["ResNetClassifier", "ResNetModule"]

log = logging.getLogger(__name__)


class ResNetModule(DistributedHooks, pl.LightningModule):
    """ResNet-18 (3-channel input) + Dropout + Linear head, trained with SGD and a cosine
    schedule on randomly cropped and flipped [0, 1] images.

    Parameters
    ----------
    n_classes : int
    cifar_stem : bool
        3×3 stride-1 first conv and no max-pool (small images).
    dropout : float
    lr, momentum, weight_decay : float
        SGD settings; the learning rate follows a cosine schedule over ``epochs`` (per epoch).
    epochs : int
    mean, std : tensors of shape (1, 3, 1, 1)
    crop_padding : int
        Zero padding of the random crop (0: no crop).
    flip : bool
        Random horizontal flips.
    seed : int
        Seeds the augmentation generator (plus the process rank under DDP).
    weights_path : Path, optional
        ResNet-18 weights file (stem and head keep their fresh initialisation).

    Notes
    -----
    Validation batches are ``(images, labels, dataset positions)``: the positions let the
    accuracy count each test sample once under DDP (:func:`nfpf.deep.distributed.count_correct`).
    The training logs (``step_losses``, ``history``) travel in the state dict's extra state,
    so they return from ``ddp_spawn`` workers.
    """

    logged = ("step_losses", "history")

    def __init__(self, n_classes: int, cifar_stem: bool, dropout: float, lr: float,
                 momentum: float, weight_decay: float, epochs: int, mean: torch.Tensor,
                 std: torch.Tensor, crop_padding: int, flip: bool, seed: int,
                 weights_path: Path | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["mean", "std", "weights_path"])
        self.backbone = resnet18_backbone(3, cifar_stem=cifar_stem, weights_path=weights_path)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.out_dim,
                                                                 n_classes))
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.step_losses: list[float] = []
        self.history: list[dict[str, Any]] = []
        self._generator: torch.Generator | None = None
        self._val_index: list[torch.Tensor] = []
        self._val_correct: list[torch.Tensor] = []
        self._t0 = 0.0
        self._epoch_lr = float(lr)
        self._pending_acc: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, K) of [0, 1] images (n, C, H, W), C = 1 (repeated to 3) or 3."""
        x = normalize(to_channels(x, 3), self.mean, self.std)
        return self.head(self.backbone(x))

    def on_train_epoch_start(self) -> None:
        self._epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = random_crop_flip(x, self.hparams.crop_padding, self.hparams.flip, self._generator)
        loss = F.cross_entropy(self(x), y)
        self.record_step_loss(loss, len(y))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        return loss

    def on_validation_epoch_start(self) -> None:
        broadcast_buffers(self)  # evaluate rank 0's model on every rank

    def validation_step(self, batch, batch_idx):
        x, y, index = batch
        self._val_index.append(index)
        self._val_correct.append(self(x).argmax(dim=1) == y)

    def on_validation_epoch_end(self) -> None:
        index = torch.cat(self._val_index) if self._val_index else \
            torch.zeros(0, dtype=torch.long, device=self.device)
        correct = torch.cat(self._val_correct) if self._val_correct else \
            torch.zeros(0, dtype=torch.bool, device=self.device)
        self._val_index, self._val_correct = [], []
        n_correct, n_seen = count_correct(self, index, correct)
        if n_seen > 0:
            acc = n_correct / n_seen
            self.log("test_acc", acc, prog_bar=True, rank_zero_only=True)
            self._pending_acc = acc

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        values, sizes = self.flush_step_losses()
        weighted = sum(value * size for value, size in zip(values, sizes, strict=True))
        loss_sum, count = sum_over_ranks(self, [weighted, sum(sizes)])
        loss = loss_sum / max(count, 1.0)  # the mean over all ranks
        acc, self._pending_acc = self._pending_acc, None
        self.history.append({"epoch": epoch, "train_loss": loss, "test_accuracy": acc,
                             "lr": self._epoch_lr})
        total = self.hparams.epochs
        if self.trainer.global_rank == 0 and (
                epoch == 1 or epoch == total or epoch % max(1, total // 10) == 0):
            extra = "" if acc is None else f", test accuracy {acc:.4f}"
            log.info("resnet18: epoch %d/%d, train loss %.4f%s (%.0f s)", epoch, total, loss,
                     extra, time.perf_counter() - self._t0)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                              weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, hp.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


class ResNetClassifier(ClassifierMixin, BaseEstimator):
    """ResNet-18 trained on the selected images with the released NFPF recipe.

    Parameters
    ----------
    epochs : int, default 100
    batch_size : int, default 128
        The global batch, capped at the number of training images (a budget smaller than the
        batch trains on one full batch per epoch). Under DDP each of the W processes takes
        ``ceil(batch_size / W)`` images per step, so the steps per epoch stay the recipe's.
    lr : float, default 0.01
        Initial SGD learning rate (cosine-annealed to 0 over ``epochs``).
    momentum, weight_decay : float, default 0.9, 5e-4
    dropout : float, default 0.5
        Dropout before the linear head.
    cifar_stem : bool, default True
        3×3 stride-1 first conv, no max-pool (small images); False: ImageNet stem.
    weights : None, "imagenet" or path, default None
        Initial backbone weights: random, torchvision's ImageNet file (from torch's cache,
        see :func:`nfpf.deep.weights.resolve_weights`) or a local file. A missing file raises
        :class:`nfpf.deep.WeightsNotFoundError` (at construction when ``download`` is off).
    download : bool, default False
        Allow downloading the ImageNet file when it is not cached (60 s socket timeout).
    mean, std : list of float or "auto", default [0.5], [0.5]
        Input normalisation after grey -> RGB conversion (1 or 3 values; "auto": the
        training images' channel statistics). The released recipe uses 0.5 / 0.5.
    crop_padding : int, default 4
        Random crop of the image size from the image padded by this many zero pixels.
    flip : bool, default True
        Random horizontal flips.
    eval_batch_size : int, default 512
    eval_every : int, default 1
        With ``fit(..., eval_set=...)``: evaluate every this many epochs.
    trainer : mapping, optional
        ``pytorch_lightning.Trainer`` settings (accelerator, devices, strategy, precision,
        and any other Trainer argument); CPU, 1 device, float32 when omitted.
    num_workers : int, default 0
        DataLoader workers (the data are in-memory tensors).
    progress : bool, default False
        Lightning's progress bar (epochs are logged either way).
    seed : int, default 0
        Weight initialisation, dropout, batch order and augmentations.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
    module_ : ResNetModule
    step_losses_ : list of float
        Training loss of every optimisation step (of rank 0's share of the batch under DDP;
        ``history_``'s ``train_loss`` is the mean over all processes).
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``test_accuracy`` (None without ``eval_set``),
        ``lr``.
    best_accuracy_, last_accuracy_ : float or None
        Test accuracy at the best and at the last evaluated epoch (with ``eval_set``).
    best_epoch_ : int or None

    Notes
    -----
    Time O(epochs · n · F) with F ≈ 0.56 GFLOPs per 32×32 image forward (CIFAR stem);
    memory: the images plus one batch of activations (~0.3 GB at batch 128, 32×32).
    """

    uses_images = True
    #: :func:`nfpf.evaluation.evaluate.evaluate_selection` passes the test split as ``eval_set``.
    evaluates_during_fit = True

    def __init__(self, epochs: int = 100, batch_size: int = 128, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, dropout: float = 0.5,
                 cifar_stem: bool = True, weights: str | os.PathLike | None = None,
                 download: bool = False, mean: Sequence[float] | str = (0.5,),
                 std: Sequence[float] | str = (0.5,), crop_padding: int = 4,
                 flip: bool = True, eval_batch_size: int = 512, eval_every: int = 1,
                 trainer: Mapping[str, Any] | None = None, num_workers: int = 0,
                 progress: bool = False, seed: int = 0):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.cifar_stem = cifar_stem
        self.weights = weights
        self.download = download
        self.mean = mean
        self.std = std
        self.crop_padding = crop_padding
        self.flip = flip
        self.eval_batch_size = eval_batch_size
        self.eval_every = eval_every
        self.trainer = trainer
        self.num_workers = num_workers
        self.progress = progress
        self.seed = seed
        self._validate()
        if not download:
            resolve_weights(weights, "resnet18", download=False)  # fail early, clearly

    def _validate(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("crop_padding", self.crop_padding, 0)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("eval_every", self.eval_every, 1)
        _check_int("num_workers", self.num_workers, 0)
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}.")
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        if not 0 <= float(self.momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum!r}.")
        trainer_settings(self.trainer)  # type check

    def fit(self, X: np.ndarray, y: np.ndarray,
            eval_set: tuple[np.ndarray, np.ndarray] | None = None) -> ResNetClassifier:
        """Train on images ``X`` (n, C, H, W) in [0, 1] with labels ``y`` (n,).

        Parameters
        ----------
        X : ndarray of shape (n, C, H, W) or (n, H, W); C = 1 or 3
        y : ndarray of shape (n,)
        eval_set : (X_test, y_test), optional
            Evaluated every ``eval_every`` epochs: fills ``history_``, ``best_accuracy_`` and
            ``last_accuracy_`` (the released code reports both; "best" picks the epoch on the
            test set and is optimistic).
        """
        self._validate()
        images = as_image_tensor(X, "classifier=resnet18")
        y = np.asarray(y)
        if len(y) != len(images):
            raise ValueError(f"X has {len(images)} images but y has {len(y)} labels.")
        if len(y) < 2:
            raise ValueError(f"classifier=resnet18 needs at least 2 training images; got "
                             f"{len(y)}.")
        self.classes_, codes = np.unique(y, return_inverse=True)
        path = resolve_weights(self.weights, "resnet18", download=bool(self.download))
        mean, std = fit_normalization(self.mean, self.std, images, 3)

        with quiet_lightning():
            trainer = make_trainer(self.trainer, int(self.epochs), bool(self.progress),
                                   check_val_every_n_epoch=int(self.eval_every),
                                   limit_val_batches=1.0 if eval_set is not None else 0)
        world = int(trainer.world_size)
        loader, batch, steps = self._train_loader(images, codes, world)
        val_loader = self._eval_loader(eval_set) if eval_set is not None else None
        log.info("resnet18: %d images, %d classes, %d epochs of %d steps (batch %s)%s",
                 len(images), len(self.classes_), self.epochs, steps,
                 describe_batch(batch, world), "" if path is None else f", weights {path.name}")
        with seeded(int(self.seed)):
            self.module_ = ResNetModule(
                len(self.classes_), bool(self.cifar_stem), float(self.dropout), float(self.lr),
                float(self.momentum), float(self.weight_decay), int(self.epochs), mean, std,
                int(self.crop_padding), bool(self.flip), int(self.seed), weights_path=path)
            fit_module(trainer, self.module_, loader, val_loader,
                       batch_option="classifier.batch_size")
        self.module_.eval()
        self._record_history()
        return self

    def _train_loader(self, images: torch.Tensor, codes: np.ndarray, world: int
                      ) -> tuple[DataLoader, int, int]:
        """The training loader, the global batch and the steps per epoch on ``world``
        processes."""
        n = len(images)
        batch = min(int(self.batch_size), n)  # the global batch
        device_batch = per_device_batch(batch, world)
        shard = -(-n // world)  # images per process and epoch (DistributedSampler)
        # BatchNorm cannot train on a batch of one sample: drop such a last batch.
        drop_last = shard > device_batch and shard % device_batch == 1
        loader = DataLoader(
            ArrayDataset(images, codes.astype(np.int64)),
            batch_size=device_batch, shuffle=True, drop_last=drop_last,
            num_workers=int(self.num_workers), generator=batch_order(int(self.seed), world))
        steps = shard // device_batch if drop_last else -(-shard // device_batch)
        return loader, batch, steps

    def _eval_loader(self, eval_set: tuple[np.ndarray, np.ndarray]) -> DataLoader:
        """The test images with their class codes (-1: a class absent from training)."""
        test_x = as_image_tensor(eval_set[0], "classifier=resnet18")
        lookup = {c: i for i, c in enumerate(self.classes_.tolist())}
        test_codes = np.array([lookup.get(v, -1) for v in np.asarray(eval_set[1]).tolist()])
        return DataLoader(
            ArrayDataset(test_x, test_codes.astype(np.int64),
                         np.arange(len(test_x), dtype=np.int64)),
            batch_size=int(self.eval_batch_size), shuffle=False,
            num_workers=int(self.num_workers))

    def _record_history(self) -> None:
        """The losses, the per-epoch test accuracies and the best and last of them."""
        self.step_losses_ = list(self.module_.step_losses)
        self.history_ = list(self.module_.history)
        accs = [(h["test_accuracy"], h["epoch"]) for h in self.history_
                if h["test_accuracy"] is not None]
        if accs:
            best = max(accs, key=lambda a: (a[0], -a[1]))
            self.best_accuracy_, self.best_epoch_ = best
            self.last_accuracy_ = accs[-1][0]
            log.info("resnet18: test accuracy best %.4f (epoch %d), last %.4f",
                     self.best_accuracy_, self.best_epoch_, self.last_accuracy_)
        else:
            self.best_accuracy_ = self.last_accuracy_ = self.best_epoch_ = None

    @torch.no_grad()
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits, float32 (m, K), of images (m, C, H, W) in [0, 1]."""
        if not hasattr(self, "module_"):
            raise RuntimeError("ResNetClassifier: call fit before predict.")
        images = as_image_tensor(X, "classifier=resnet18")
        device = inference_device(self.trainer)
        self.module_.eval().to(device)
        with gpu_memory_guard("ResNet-18 inference", "classifier.eval_batch_size"):
            out = [self.module_(chunk.to(device)).float().cpu()
                   for chunk in images.split(int(self.eval_batch_size))]
        return torch.cat(out).numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (m, K)."""
        return torch.softmax(torch.as_tensor(self.decision_function(X)), dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (m,) of images (m, C, H, W) in [0, 1]."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]
