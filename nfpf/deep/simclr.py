"""SimCLR (Chen et al., ICML 2020) trained on the unlabeled pool, as a feature space.

:class:`SimCLRModule` is the Lightning module (two augmented views per image, a projection
head, the NT-Xent loss); :class:`SimCLRFeatures` wraps it as a
:class:`nfpf.features.FeatureSpace`: ``fit_transform(pool)`` trains on the pool images (no
labels) and returns the backbone's pooled embeddings, ``transform(test)`` embeds new images.
``compute_features`` caches both, so every selector and classifier of a sweep reuses one
training.

Augmentations suited to small images (SimCLR's CIFAR recipe): random resized crop (area
0.2–1), horizontal flip, colour jitter (0.4, 0.4, 0.4, hue 0.1) with probability 0.8, grey
with probability 0.2, no blur. They run batched on the training device with a seeded
generator, so a CPU run is deterministic.
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
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from nfpf.core.device import gpu_memory_guard
from nfpf.core.rng import seeded
from nfpf.core.selection import check_whole
from nfpf.core.trainer import inference_device, make_trainer, quiet_lightning
from nfpf.deep.augment import color_jitter, random_resized_crop_flip
from nfpf.deep.backbones import BACKBONES, build_backbone
from nfpf.deep.distributed import (
    ArrayDataset,
    DistributedHooks,
    batch_order,
    describe_batch,
    fit_module,
    gather_batch,
    per_device_batch,
)
from nfpf.deep.tensors import as_image_tensor, fit_normalization, normalize
from nfpf.features import FeatureSpace

__all__ = ["NORMALIZE", "SimCLRFeatures", "SimCLRModule", "embed", "nt_xent", "weight_files"]

log = logging.getLogger(__name__)

NORMALIZE = ("standardize", "l2", None)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy of SimCLR.

    Parameters
    ----------
    z1, z2 : tensors of shape (n, k)
        Projections of the two views; row i of ``z1`` and row i of ``z2`` are positives, the
        other 2n - 2 rows are negatives.
    temperature : float

    Returns
    -------
    Scalar loss, the mean over the 2n anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


class SimCLRModule(DistributedHooks, pl.LightningModule):
    """Backbone + projection MLP trained with NT-Xent on pairs of augmented views.

    Parameters
    ----------
    backbone : {"small_cnn", "resnet18"}
    in_channels : int
    width, stem_stride : int
        Width and first-conv stride of the small CNN (ignored by resnet18).
    proj_hidden, proj_dim : int
        Projection head ``Linear(out_dim, proj_hidden) - ReLU - Linear(proj_hidden, proj_dim)``.
    temperature, lr, weight_decay : float
        NT-Xent temperature; Adam(W) learning rate (cosine schedule over ``epochs``) and
        weight decay.
    epochs : int
    mean, std : tensors of shape (1, C, 1, 1)
        Input normalisation applied after augmentation.
    crop_scale : (float, float)
    jitter, hue, jitter_p, grey_p : float
        Colour distortion (see :func:`nfpf.deep.augment.color_jitter`).
    seed : int
        Seeds the augmentation generator (plus the process rank under DDP).

    Notes
    -----
    Under DDP the projections of every process are gathered (with their gradients) before
    NT-Xent, so each anchor has the negatives of the whole global batch, as on one process.
    The loss logs travel in the state dict's extra state (they return from ``ddp_spawn``).
    """

    logged = ("step_losses", "epoch_losses")

    def __init__(self, backbone: str, in_channels: int, width: int, stem_stride: int,
                 proj_hidden: int,
                 proj_dim: int, temperature: float, lr: float, weight_decay: float,
                 epochs: int, mean: torch.Tensor, std: torch.Tensor,
                 crop_scale: Sequence[float], jitter: float, hue: float, jitter_p: float,
                 grey_p: float, seed: int):
        super().__init__()
        self.save_hyperparameters(ignore=["mean", "std"])
        self.backbone = build_backbone(backbone, in_channels, width, stem_stride)
        dim = self.backbone.out_dim
        self.projector = nn.Sequential(nn.Linear(dim, proj_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(proj_hidden, proj_dim))
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.step_losses: list[float] = []
        self.epoch_losses: list[float] = []
        self._generator: torch.Generator | None = None
        self._t0 = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone embeddings (n, out_dim) of [0, 1] images (n, C, H, W)."""
        return self.backbone(normalize(x, self.mean, self.std))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        x = random_resized_crop_flip(x, self._generator, scale=tuple(hp.crop_scale))
        return color_jitter(x, self._generator, strength=hp.jitter, hue=hp.hue,
                            p=hp.jitter_p, grey_p=hp.grey_p)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        v1, v2 = self.augment(x), self.augment(x)
        z1 = gather_batch(self, self.projector(self(v1)))
        z2 = gather_batch(self, self.projector(self(v2)))
        loss = nt_xent(z1, z2, self.hparams.temperature)
        self.record_step_loss(loss)
        self.log("simclr_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # the loss of a step is already that of the global batch: equal on every rank
        values, _ = self.flush_step_losses()
        mean = sum(values) / max(len(values), 1)
        self.epoch_losses.append(mean)
        epoch = self.current_epoch + 1
        total = self.hparams.epochs
        if self.trainer.global_rank == 0 and (
                epoch == 1 or epoch == total or epoch % max(1, total // 10) == 0):
            log.info("simclr: epoch %d/%d, NT-Xent %.4f (%.0f s)", epoch, total, mean,
                     time.perf_counter() - self._t0)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@torch.no_grad()
def embed(module: nn.Module, images: torch.Tensor, batch_size: int,
          device: torch.device) -> np.ndarray:
    """``module(images)`` in eval mode, in batches on ``device``; float32 (n, d) on the CPU."""
    module.eval()
    module.to(device)
    with gpu_memory_guard("SimCLR embedding", "features.embed_batch_size"):
        out = [module(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def network_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers of ``module``'s state dict (not its training logs)."""
    return {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The files :meth:`SimCLRFeatures.save_weights` wrote at ``path`` (in part order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    parts = sorted(path.glob("part-*.pt"), key=lambda p: int(p.stem.split("-")[1])) \
        if path.is_dir() else []
    return parts


def _check_options(backbone: str, normalize: str | None, crop_scale: Sequence[float],
                   max_train_samples: int | None, integers: dict[str, tuple[Any, int]],
                   positive: dict[str, Any]) -> None:
    """Refuse bad :class:`SimCLRFeatures` options, naming the key and what it takes."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {list(BACKBONES)}; got {backbone!r}.")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {list(NORMALIZE)}; got {normalize!r}.")
    for name, (value, low) in integers.items():
        check_whole(name, value, low=low)
    for name, value in positive.items():
        if not float(value) > 0:
            raise ValueError(f"{name} must be > 0; got {value!r}.")
    check_whole("max_train_samples", max_train_samples, low=2, also=(None,))
    scale = [float(s) for s in crop_scale]
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"crop_scale must be [low, high] with 0 < low <= high <= 1; "
                         f"got {list(crop_scale)}.")


class SimCLRFeatures(FeatureSpace):
    """Embeddings of a SimCLR network trained on the pool (no labels).

    Parameters
    ----------
    backbone : {"small_cnn", "resnet18"}, default "small_cnn"
        ``small_cnn`` (:class:`nfpf.deep.backbones.SmallCNN`, 256-d at width 32) trains in
        minutes on a CPU; ``resnet18`` (CIFAR stem, 512-d) is the usual choice on GPUs.
    width : int, default 32
        Width of the small CNN.
    stem_stride : int, default 2
        Stride of the small CNN's first conv: 2 halves the resolution at once (4x cheaper;
        on 32x32 CIFAR images it trains about as well in a fixed CPU time), 1 keeps it.
    epochs : int, default 30
        Training epochs over the (sub)pool. ``epochs=0`` returns the embeddings of the
        randomly initialised network (a control).
    batch_size : int, default 256
        Images per step (each gives two views), the global batch: capped at the training-set
        size, split over the processes under DDP.
    lr, weight_decay : float
        AdamW learning rate (cosine-annealed over ``epochs``) and weight decay.
    temperature : float, default 0.1
        NT-Xent temperature (0.1 learned faster than 0.2 and 0.5 in short CPU runs on CIFAR).
    proj_hidden, proj_dim : int, default 512, 128
        Projection head (discarded after training; embeddings are the backbone's).
    max_train_samples : int, optional
        Train on a seeded random subset of at most this many pool images (all pool images
        are embedded). Bounds the training cost on a CPU.
    crop_scale : (float, float), default (0.2, 1.0)
    jitter, hue, jitter_p, grey_p : float, default 0.4, 0.1, 0.8, 0.2
    mean, std : list of float or "auto", default [0.5], [0.5]
        Input normalisation (1 or C values; "auto": the pool's channel statistics).
    normalize : {"standardize", "l2", None}, default "standardize"
        Output scaling: each embedding dimension centred and scaled to unit variance over
        the pool (the test split uses the pool's statistics), unit-L2 rows, or the raw
        backbone output. The raw output of a short CPU run is tiny (per-dimension std
        ~1e-2), which a fixed-C classifier such as ``classifier=logreg`` (C = 1) treats as
        nearly constant; standardising makes it usable as is.
    trainer : mapping, optional
        ``pytorch_lightning.Trainer`` settings (accelerator, devices, strategy, precision,
        ...); CPU, 1 device, float32 when omitted.
    embed_batch_size : int, default 1024
    weights : path, optional
        A network saved by :meth:`save_weights` (a file, or a directory of its parts),
        loaded before training; with ``epochs=0`` the embeddings are that network's. This is
        how a run continues on another machine, or in a later session, from the trained
        network (megabytes) rather than from its embeddings.
    progress : bool, default False
        Lightning's progress bar (epoch losses are logged either way).
    seed : int, default 0
        Weight initialisation, the batch order, the augmentations and the training subset.

    Attributes
    ----------
    module_ : SimCLRModule
    train_indices_ : ndarray
        Pool indices the network was trained on.
    epoch_losses_, step_losses_ : list of float

    Notes
    -----
    Time: O(epochs · n_train · cost(backbone)) for training plus one forward pass per
    embedded image; memory: the images plus one batch of activations. Under DDP
    ``batch_size`` stays the global batch (``ceil(batch_size / W)`` images per process) and
    NT-Xent sees the negatives of all processes.
    """

    def __init__(self, backbone: str = "small_cnn", width: int = 32, stem_stride: int = 2,
                 epochs: int = 30,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-6,
                 temperature: float = 0.1, proj_hidden: int = 512, proj_dim: int = 128,
                 max_train_samples: int | None = None,
                 crop_scale: Sequence[float] = (0.2, 1.0), jitter: float = 0.4,
                 hue: float = 0.1, jitter_p: float = 0.8, grey_p: float = 0.2,
                 mean: Sequence[float] | str = (0.5,), std: Sequence[float] | str = (0.5,),
                 normalize: str | None = "standardize",
                 trainer: Mapping[str, Any] | None = None, embed_batch_size: int = 1024,
                 weights: str | os.PathLike | None = None, progress: bool = False,
                 seed: int = 0):
        _check_options(backbone, normalize, crop_scale, max_train_samples,
                       integers={"width": (width, 1), "stem_stride": (stem_stride, 1),
                                 "epochs": (epochs, 0), "batch_size": (batch_size, 2),
                                 "proj_hidden": (proj_hidden, 1), "proj_dim": (proj_dim, 1),
                                 "embed_batch_size": (embed_batch_size, 1)},
                       positive={"lr": lr, "temperature": temperature})
        # the network
        self.backbone, self.width, self.stem_stride = backbone, int(width), int(stem_stride)
        self.proj_hidden, self.proj_dim = int(proj_hidden), int(proj_dim)
        # the training
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.weight_decay, self.temperature = float(weight_decay), float(temperature)
        self.max_train_samples = None if max_train_samples is None else int(max_train_samples)
        # the augmentations and the input scaling
        self.crop_scale = [float(v) for v in crop_scale]
        self.jitter, self.hue = float(jitter), float(hue)
        self.jitter_p, self.grey_p = float(jitter_p), float(grey_p)
        self.mean = mean if isinstance(mean, str) else [float(v) for v in mean]
        self.std = std if isinstance(std, str) else [float(v) for v in std]
        self.normalize = normalize
        self.trainer = trainer
        self.embed_batch_size = int(embed_batch_size)
        self.weights = None if weights is None else str(weights)
        if self.weights is not None and not weight_files(self.weights):
            raise ValueError(f"features.weights={self.weights}: no file saved by "
                             f"SimCLRFeatures.save_weights there (a .pt file or a directory "
                             f"of part-*.pt files); set weights=null to train from scratch.")
        self.progress = bool(progress)
        self.seed = int(seed)

    def save_weights(self, path: str | os.PathLike, part_bytes: int | None = None
                     ) -> list[Path]:
        """Save the trained network (backbone, projector, buffers) in float16.

        The embeddings of a network loaded from these files (``weights=path``) are those of
        the float16-rounded weights, the same on every load.

        Parameters
        ----------
        path : path
            A file (one part), or with ``part_bytes`` a directory of ``part-<i>.pt`` files.
        part_bytes : int, optional
            Largest size of one part (e.g. what a file transfer allows); a tensor larger
            than that gets a part of its own.

        Returns
        -------
        The files written.
        """
        if not hasattr(self, "module_"):
            raise RuntimeError("SimCLRFeatures: nothing to save; call fit first.")
        state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                 for k, v in network_state(self.module_).items()}
        if part_bytes is None:
            torch.save(state, path)
            return [Path(path)]
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        parts: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for key, value in state.items():
            nbytes = value.numel() * value.element_size()
            if parts[-1] and size + nbytes > part_bytes:
                parts.append({})
                size = 0
            parts[-1][key] = value
            size += nbytes
        written = [folder / f"part-{i}.pt" for i in range(len(parts))]
        for part, target in zip(parts, written, strict=True):
            torch.save(part, target)
        return written

    def fit(self, pool: np.ndarray) -> SimCLRFeatures:
        """Train on the pool's [0, 1] images (n, C, H, W) (and fit the output scaling)."""
        self.fit_transform(pool)
        return self

    def fit_transform(self, pool: np.ndarray) -> np.ndarray:
        """Train on the pool and return its embeddings, float32 (n, out_dim)."""
        images = as_image_tensor(pool, "features=simclr")
        self._train(images)
        raw = self._embed(images)
        if self.normalize == "standardize":
            self.scale_mean_ = raw.mean(axis=0, dtype=np.float64).astype(np.float32)
            std = raw.std(axis=0, dtype=np.float64)
            self.scale_std_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
        return self._scale(raw)

    def _train(self, images: torch.Tensor) -> None:
        n = len(images)
        if n < 2:
            raise ValueError(f"SimCLR needs at least 2 pool images; got {n}.")
        rng = np.random.default_rng(self.seed)
        if self.max_train_samples is not None and n > self.max_train_samples:
            idx = np.sort(rng.choice(n, size=self.max_train_samples, replace=False))
            log.info("simclr: training on a seeded subset of %d of the %d pool images",
                     len(idx), n)
        else:
            idx = np.arange(n)
        self.train_indices_ = idx
        train = images[torch.as_tensor(idx)] if len(idx) < n else images
        channels = images.shape[1]
        mean, std = fit_normalization(self.mean, self.std, train, channels)
        with seeded(self.seed):
            self.module_ = SimCLRModule(
                self.backbone, channels, self.width, self.stem_stride, self.proj_hidden,
                self.proj_dim,
                self.temperature, self.lr, self.weight_decay, self.epochs, mean, std,
                self.crop_scale, self.jitter, self.hue, self.jitter_p, self.grey_p,
                self.seed)
            if self.weights is not None:
                self._load_weights()
            if self.epochs > 0:
                self._fit_module(train)
        self.step_losses_ = list(self.module_.step_losses)
        self.epoch_losses_ = list(self.module_.epoch_losses)

    def _load_weights(self) -> None:
        """The network of ``weights`` (files of :meth:`save_weights`) into ``module_``."""
        state = {}
        for file in weight_files(self.weights):
            state.update(torch.load(file, map_location="cpu", weights_only=True))
        own = network_state(self.module_)
        if {k: v.shape for k, v in state.items()} != {k: v.shape for k, v in own.items()}:
            raise ValueError(
                f"features.weights={self.weights} holds another network (other "
                f"tensor names or shapes): give the backbone, width and stem_stride "
                f"it was trained with.")
        self.module_.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()},
                                     strict=False)  # the training logs stay empty
        log.info("simclr: network loaded from %s", self.weights)

    def _fit_module(self, train: torch.Tensor) -> None:
        """Train ``module_`` on ``train`` for ``epochs`` epochs (drop_last: NT-Xent needs
        full batches)."""
        with quiet_lightning():
            trainer = make_trainer(self.trainer, self.epochs, self.progress)
        world = int(trainer.world_size)
        batch = min(self.batch_size, len(train))  # the global batch
        device_batch = per_device_batch(batch, world)
        loader = DataLoader(ArrayDataset(train), batch_size=device_batch, shuffle=True,
                            drop_last=True, generator=batch_order(self.seed, world))
        steps = -(-len(train) // world) // device_batch
        log.info("simclr: %s backbone, %d images, %d epochs of %d steps (batch %s)",
                 self.backbone, len(train), self.epochs, steps, describe_batch(batch, world))
        fit_module(trainer, self.module_, loader, batch_option="features.batch_size")

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Embeddings, float32 (m, out_dim), of [0, 1] images (m, C, H, W)."""
        if not hasattr(self, "module_"):
            raise RuntimeError("SimCLRFeatures: call fit or fit_transform before transform.")
        images = as_image_tensor(x, "features=simclr")
        expected = self.module_.mean.shape[1]
        if images.shape[1] != expected:
            raise ValueError(
                f"features=simclr was trained on {expected}-channel images; got "
                f"{images.shape[1]} channels."
            )
        return self._scale(self._embed(images))

    def _embed(self, images: torch.Tensor) -> np.ndarray:
        out = embed(self.module_, images, self.embed_batch_size,
                    inference_device(self.trainer))
        if not np.isfinite(out).all():
            raise FloatingPointError(
                "simclr embeddings contain NaN/inf: training diverged; lower features.lr."
            )
        return out

    def _scale(self, out: np.ndarray) -> np.ndarray:
        if self.normalize == "l2":
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            return (out / np.maximum(norms, 1e-12)).astype(np.float32)
        if self.normalize == "standardize":
            if not hasattr(self, "scale_mean_"):
                raise RuntimeError("SimCLRFeatures: standardisation statistics missing; call "
                                   "fit_transform on the pool first.")
            return ((out - self.scale_mean_) / self.scale_std_).astype(np.float32)
        return out
