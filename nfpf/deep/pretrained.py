"""Pooled features of a pretrained torchvision backbone (from local weights).

:class:`PretrainedFeatures` is a :class:`nfpf.features.FeatureSpace` with nothing to fit:
both ``fit_transform`` and ``transform`` resize the images, normalise them with the
ImageNet statistics, and return the backbone's globally pooled features (the input of its
last linear layer; 512-d for ResNet-18). This is what the released NFPF code clusters for its
initial seeds ("ImageNet ResNet-18 pooled features").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nfpf.core.selection import check_whole
from nfpf.core.trainer import inference_device
from nfpf.deep.tensors import as_image_tensor, fit_normalization, to_channels
from nfpf.deep.weights import load_state_dict_file, resolve_weights
from nfpf.features import FeatureSpace

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PretrainedFeatures", "build_torchvision_backbone"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _strip_last_linear(model: nn.Module) -> None:
    """Replace the model's last ``nn.Linear`` (its classifier) by the identity."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no linear classifier to remove.")
    parent = model
    *path, leaf = last.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, leaf, nn.Identity())


def build_torchvision_backbone(arch: str, weights_path) -> nn.Module:
    """torchvision model ``arch`` with the weights of ``weights_path`` and no classifier."""
    import torchvision

    try:
        model = torchvision.models.get_model(arch, weights=None)
    except (ValueError, KeyError) as err:
        known = ", ".join(n for n in torchvision.models.list_models(torchvision.models)
                          if n.startswith(("resnet", "wide", "resnext", "convnext", "efficient",
                                           "mobilenet", "densenet", "regnet", "vit")))
        raise ValueError(f"unknown torchvision architecture arch={arch!r}; e.g. {known}.") \
            from err
    state = load_state_dict_file(weights_path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(
            f"the weights file {weights_path} does not fit torchvision's {arch}: "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}); is it an {arch} state dict?"
        )
    if unexpected:
        log.warning("%s: ignoring %d unexpected tensors of %s", arch, len(unexpected),
                    weights_path)
    _strip_last_linear(model)
    return model.eval()


class PretrainedFeatures(FeatureSpace):
    """Globally pooled features of a pretrained torchvision backbone.

    Parameters
    ----------
    arch : str, default "resnet18"
        A torchvision classification model name (resnet18, resnet50, convnext_tiny, ...).
    weights : "imagenet" or path, default "imagenet"
        ``"imagenet"``: torchvision's IMAGENET1K_V1 file from torch's cache
        (``$TORCH_HOME/hub/checkpoints`` or ``~/.cache/torch/hub/checkpoints``); a path: a
        state dict of ``arch``. Missing weights raise
        :class:`nfpf.deep.WeightsNotFoundError` (saying where it looked) at the first
        ``fit_transform``/``transform``; nothing is downloaded unless ``download`` is true.
    download : bool, default False
        Allow downloading the ImageNet file when not cached (60 s socket timeout).
    image_size : int, [H, W] or None, default 224
        Bilinear (antialiased) resize before the backbone; None keeps the native size
        (much faster on small images, but ImageNet features are made for ~224 px).
    mean, std : list of float, default ImageNet statistics
    batch_size : int, default 256
    trainer : mapping, optional
        Only ``accelerator`` is used (the device of the forward passes).

    Notes
    -----
    Time: one forward pass per image (1.8 GFLOPs for ResNet-18 at 224 px: ~15 min for
    CIFAR-10's 60,000 images on a 2-core CPU at best, seconds on a GPU); memory: one batch.
    """

    def __init__(self, arch: str = "resnet18", weights: str | os.PathLike = "imagenet",
                 download: bool = False, image_size: int | Sequence[int] | None = 224,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 batch_size: int = 256, trainer: Mapping[str, Any] | None = None):
        if weights is None or (isinstance(weights, str) and weights.lower() in ("", "none",
                                                                               "null")):
            raise ValueError(
                "features=pretrained needs weights (weights=imagenet or a file path); for the "
                "features of a randomly initialised network use features=simclr "
                "features.epochs=0."
            )
        if image_size is not None:
            size = list(image_size) if isinstance(image_size, Sequence) else [image_size] * 2
            if len(size) != 2:
                raise ValueError(f"image_size must be a positive int, [H, W] or null; got "
                                 f"{image_size!r}.")
            image_size = tuple(check_whole("image_size", s, low=1, hint=" (or [H, W] or null)")
                               for s in size)
        check_whole("batch_size", batch_size, low=1)
        self.arch = arch
        self.weights = weights
        self.download = bool(download)
        self.image_size = image_size
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.batch_size = int(batch_size)
        self.trainer = trainer

    def _model(self) -> nn.Module:
        if not hasattr(self, "model_"):
            path = resolve_weights(
                self.weights, self.arch, download=self.download,
                fallback="use features=simclr (learned on the pool) or features=pca")
            self.model_ = build_torchvision_backbone(self.arch, path)
            self.weights_file_ = str(path)
        return self.model_

    def fit_transform(self, pool: np.ndarray) -> np.ndarray:
        """Pooled features (n, d) of the pool images (nothing is fitted)."""
        return self.transform(pool)

    @torch.no_grad()
    def transform(self, x: np.ndarray) -> np.ndarray:
        """Pooled features, float32 (m, d), of [0, 1] images (m, C, H, W), C = 1 or 3."""
        images = as_image_tensor(x, "features=pretrained")
        model = self._model()
        device = inference_device(self.trainer)
        model.to(device).eval()
        mean, std = fit_normalization(self.mean, self.std, images[:1], 3)
        mean, std = mean.to(device), std.to(device)
        out = []
        n_batches = (len(images) + self.batch_size - 1) // self.batch_size
        for i, chunk in enumerate(images.split(self.batch_size)):
            chunk = to_channels(chunk.to(device), 3)
            if self.image_size is not None and tuple(chunk.shape[-2:]) != self.image_size:
                chunk = F.interpolate(chunk, size=self.image_size, mode="bilinear",
                                      align_corners=False, antialias=True)
            out.append(model((chunk - mean) / std).flatten(1).float().cpu())
            if (i + 1) % 20 == 0 or i + 1 == n_batches:
                log.info("pretrained %s: %d/%d batches", self.arch, i + 1, n_batches)
        return torch.cat(out).numpy().astype(np.float32, copy=False)
