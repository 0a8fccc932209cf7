"""Batched image augmentations: random crops, flips and colour distortion.

They run on whole batches as tensor operations (on the training device), with random
parameters drawn from an explicit ``torch.Generator``; the same seed therefore gives the same
training on CPU, and no per-sample Python loop is involved. Inputs are [0, 1] images before
normalisation.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["color_jitter", "random_crop_flip", "random_resized_crop_flip"]


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool,
                     generator: torch.Generator) -> torch.Tensor:
    """Random crop of the input size from the zero-padded batch, then a random horizontal flip.

    The batched equivalent of ``RandomCrop(size, padding) + RandomHorizontalFlip()`` applied
    to [0, 1] images before normalisation (zero padding is black, as in torchvision).

    Parameters
    ----------
    x : tensor of shape (n, C, H, W)
    padding : int
        Pixels of zero padding on every side (0: no crop).
    flip : bool
        Flip each image left-right with probability 1/2.
    """
    n, _, h, w = x.shape
    if padding > 0:
        xp = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (n, h)
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (n, w)
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, C)
        x = x.permute(0, 3, 1, 2)
    if flip:
        mask = _rand(n, generator, x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def random_resized_crop_flip(
    x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
) -> torch.Tensor:
    """Random resized crop (area share in ``scale``, aspect in ``ratio``) and horizontal flip.

    One affine resampling per batch (bilinear, output size = input size): the batched
    counterpart of torchvision's ``RandomResizedCrop + RandomHorizontalFlip``.
    """
    n = x.shape[0]
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        n, generator=generator)
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - sw) * (2 * torch.rand(n, generator=generator) - 1)  # centre in [-1, 1] coords
    cy = (1 - sh) * (2 * torch.rand(n, generator=generator) - 1)
    sign = torch.ones(n)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sw * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def color_jitter(
    x: torch.Tensor, generator: torch.Generator, strength: float = 0.4, hue: float = 0.1,
    p: float = 0.8, grey_p: float = 0.2,
) -> torch.Tensor:
    """SimCLR colour distortion on [0, 1] images: jitter with probability ``p``, then grey
    with probability ``grey_p``.

    Brightness, contrast and saturation factors are uniform in [1 - strength, 1 + strength]
    and the hue shift uniform in [-hue, hue] of a turn (a rotation of the chroma plane in YIQ
    space, a smooth stand-in for torchvision's HSV shift); they are applied in this fixed
    order (torchvision shuffles the order). Grey images get brightness and contrast only.
    """
    n, c = x.shape[:2]
    dev = x.device

    def factor() -> torch.Tensor:
        f = 1 + strength * (2 * torch.rand(n, generator=generator) - 1)
        return f.to(dev, x.dtype).view(n, 1, 1, 1)

    apply = (torch.rand(n, generator=generator) < p).to(dev).view(n, 1, 1, 1)
    b, con, sat = factor(), factor(), factor()
    angle = (hue * (2 * torch.rand(n, generator=generator) - 1) * 2 * math.pi).to(dev, x.dtype)
    greyify = (torch.rand(n, generator=generator) < grey_p).to(dev).view(n, 1, 1, 1)

    y = (x * b).clamp(0, 1)
    mean = _grey(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * con + mean).clamp(0, 1)
    if c == 3:
        g = _grey(y)
        y = ((y - g) * sat + g).clamp(0, 1)
        # inverted on the CPU: on a GPU, linalg.inv checks its result and waits for the GPU
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                               [0.211, -0.523, 0.312]], dtype=x.dtype)
        from_yiq = torch.linalg.inv(to_yiq).to(dev)
        to_yiq = to_yiq.to(dev)
        yiq = torch.einsum("ij,njhw->nihw", to_yiq, y)
        cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
        y = torch.einsum("ij,njhw->nihw", from_yiq, yiq).clamp(0, 1)
    y = torch.where(apply, y, x)
    if c == 3:
        y = torch.where(greyify, _grey(y).expand(-1, 3, -1, -1), y)
    return y
