"""Shared parts of the deep models: image checks, batched augmentations, seeding and weight
files (the Lightning Trainer of every model is built by :mod:`nfpf.core.trainer`).

Augmentations run on whole batches as tensor operations (on the training device), with
random parameters drawn from an explicit ``torch.Generator``; the same seed therefore gives
the same training on CPU, and no per-sample Python loop is involved.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "WeightsNotFoundError",
    "as_image_tensor",
    "color_jitter",
    "fit_normalization",
    "load_state_dict_file",
    "normalize",
    "random_crop_flip",
    "random_resized_crop_flip",
    "resolve_weights",
    "seeded",
    "to_channels",
]

log = logging.getLogger(__name__)

class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights were asked for but no file is available (and no download allowed)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Batched augmentations (random parameters from an explicit generator)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generators seeded, restoring them afterwards.

    Weight initialisation and dropout draw from the global generator (PyTorch has no
    per-module one); forking it keeps the caller's random state untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


# ---------------------------------------------------------------------------------------------
# Weight files
# ---------------------------------------------------------------------------------------------


def _hub_checkpoint_dirs() -> list[Path]:
    """Where torchvision caches weight files: ``$TORCH_HOME/hub/checkpoints`` (torch.hub's
    directory) and ``~/.cache/torch/hub/checkpoints``."""
    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    home = Path.home() / ".cache" / "torch" / "hub" / "checkpoints"
    if home not in dirs:
        dirs.append(home)
    return dirs


def _imagenet_weights_enum(arch: str):
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError) as err:
        raise ValueError(f"unknown torchvision architecture {arch!r}.") from err
    return getattr(enum, "IMAGENET1K_V1", None) or enum.DEFAULT


def resolve_weights(weights: str | os.PathLike | None, arch: str, download: bool = False,
                    timeout: float = 60.0,
                    fallback: str = "weights=null trains from random initialisation"
                    ) -> Path | None:
    """The file holding the weights asked for, or ``None`` for random initialisation.

    Parameters
    ----------
    weights : None, "imagenet" or a path
        ``"imagenet"``: torchvision's ImageNet file for ``arch`` (IMAGENET1K_V1), looked up in
        ``$TORCH_HOME/hub/checkpoints`` and ``~/.cache/torch/hub/checkpoints``; a path: that
        file (a state dict, or a checkpoint with a ``state_dict``/``model`` entry).
    arch : str
        torchvision model name, e.g. ``"resnet18"``.
    download : bool, default False
        Allow downloading the ImageNet file into torch's cache when it is missing (socket
        timeout ``timeout`` seconds, so an offline machine fails instead of hanging).
    fallback : str
        The alternative the error message suggests last.

    Raises
    ------
    WeightsNotFoundError
        When the file is not there (and downloading is off or fails); the message lists
        where it looked and how to provide the file.
    """
    if weights is None or (isinstance(weights, str) and weights.lower() in ("", "none", "null")):
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        enum = _imagenet_weights_enum(arch)
        url = enum.url
        filename = url.rsplit("/", 1)[-1]
        candidates = [d / filename for d in _hub_checkpoint_dirs()]
        for path in candidates:
            if path.is_file():
                log.info("%s: ImageNet weights from %s", arch, path)
                return path
        if download:
            target = candidates[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            log.info("%s: downloading ImageNet weights %s -> %s", arch, url, target)
            old = socket.getdefaulttimeout()
            socket.setdefaulttimeout(timeout)
            try:
                torch.hub.download_url_to_file(url, str(target), progress=False)
            except Exception as err:
                raise WeightsNotFoundError(
                    f"could not download the ImageNet weights of {arch} from {url} ({err}). "
                    f"Download it elsewhere and copy it to {target}, or pass weights=<path>."
                ) from err
            finally:
                socket.setdefaulttimeout(old)
            return target
        looked = ", ".join(str(p) for p in candidates)
        raise WeightsNotFoundError(
            f"ImageNet weights for {arch} were asked for (weights=imagenet) but {filename} is "
            f"not in torch's cache; looked for: {looked}. Copy the file (from {url}) to one of "
            f"these places, or set TORCH_HOME to a directory whose hub/checkpoints holds it, or "
            f"pass weights=/path/to/{filename}, or allow download=true on a machine with "
            f"internet access; or {fallback}."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file {path} does not exist (weights={str(weights)!r}). Give the path of "
            f"a state-dict file (.pth/.pt), weights=imagenet for torchvision's ImageNet file, "
            f"or {fallback}."
        )
    return path


_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "net.")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file: a state dict, or a checkpoint dict with ``state_dict``/``model``.

    Common wrapper prefixes (``module.``, ``model.``, ``backbone.``, ...) are stripped.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read a PyTorch weights file ({err}).") from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor)
                                               for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor).")
    state = dict(obj)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def load_matching(module: nn.Module, state: Mapping[str, torch.Tensor], who: str,
                  path: Path) -> list[str]:
    """Copy the parameters of ``state`` whose name and shape match ``module``'s.

    Returns the names of ``module``'s parameters left at their initialisation (e.g. a
    replaced stem or head). Fails when less than half of ``module``'s tensors match (a file
    of another architecture).
    """
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(usable) < len(own) / 2:
        raise ValueError(
            f"{who}: the weights file {path} matches only {len(usable)} of the model's "
            f"{len(own)} tensors; is it a {who} checkpoint?"
        )
    module.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)
