"""Image batches as the networks take them: a float (n, C, H, W) tensor in [0, 1], its
channels matched to the network's, and per-channel normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_image_tensor", "fit_normalization", "normalize", "to_channels"]


def as_image_tensor(x: np.ndarray | torch.Tensor, who: str) -> torch.Tensor:
    """``x`` as a float32 tensor of shape (n, C, H, W) in [0, 1], without copying if possible.

    (n, H, W) arrays get a channel axis; flat (n, d) arrays are refused with a message, since
    a convolutional network needs the image shape (vector datasets have none).
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ValueError(
            f"{who} needs images shaped (n, C, H, W) (or (n, H, W)); got an array of shape "
            f"{tuple(t.shape)}. Vector datasets (flat features) have no image shape: use "
            f"features=raw/standardize/pca and a feature classifier (e.g. classifier=logreg)."
        )
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    elif t.dtype != torch.float32:
        t = t.float()
    return t


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a grey channel to ``channels`` (grey datasets on RGB backbones); else check C."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    raise ValueError(
        f"images have {c} channels but the network expects {channels}; only grey (1) images "
        f"are converted automatically. Load the dataset with mode=RGB (or mode=L)."
    )


def fit_normalization(
    mean: Sequence[float] | str | None, std: Sequence[float] | str | None,
    images: torch.Tensor, channels: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) tensors of shape (1, channels, 1, 1).

    ``mean``/``std`` are lists of 1 or ``channels`` numbers, or ``"auto"`` for the statistics
    of ``images`` (computed after grey -> ``channels`` conversion).
    """
    out = []
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, str):
            if value != "auto":
                raise ValueError(f"{name} must be a list of numbers or 'auto'; got {value!r}.")
            x = to_channels(images, channels)
            stats = x.mean(dim=(0, 2, 3)) if name == "mean" else x.std(dim=(0, 2, 3))
            vec = stats.clamp_min(1e-6) if name == "std" else stats
        else:
            vals = [float(v) for v in (value if value is not None else [0.0])]
            if len(vals) not in (1, channels):
                raise ValueError(
                    f"{name} must have 1 or {channels} values (one per channel); got {vals}."
                )
            if name == "std" and min(vals) <= 0:
                raise ValueError(f"std values must be > 0; got {vals}.")
            vec = torch.tensor(vals, dtype=torch.float32).expand(channels).clone()
        out.append(vec.view(1, channels, 1, 1))
    return out[0], out[1]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` with per-channel buffers (moved to ``x``'s device).

    On a GPU the result is laid out channels-last, the layout the convolutions of a
    network moved to channels-last (:class:`nfpf.deep.distributed.DistributedHooks`) run
    fastest in under mixed precision; the values are the same.
    """
    out = (x - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype)
    if out.is_cuda and out.ndim == 4:
        out = out.contiguous(memory_format=torch.channels_last)
    return out
