"""Weight files of the deep models: where pretrained weights are (torch's cache or a given
path; nothing is downloaded unless asked), reading a state dict from a file, and copying the
tensors that match into a module."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["WeightsNotFoundError", "load_matching", "load_state_dict_file", "resolve_weights"]

log = logging.getLogger(__name__)


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights were asked for but no file is available (and no download allowed)."""


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
        return _imagenet_file(arch, download, timeout, fallback)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file {path} does not exist (weights={str(weights)!r}). Give the path of "
            f"a state-dict file (.pth/.pt), weights=imagenet for torchvision's ImageNet file, "
            f"or {fallback}."
        )
    return path


def _imagenet_file(arch: str, download: bool, timeout: float, fallback: str) -> Path:
    """torchvision's ImageNet weights file of ``arch`` in torch's cache (downloaded there
    when missing and ``download`` is on)."""
    url = _imagenet_weights_enum(arch).url
    filename = url.rsplit("/", 1)[-1]
    candidates = [d / filename for d in _hub_checkpoint_dirs()]
    for path in candidates:
        if path.is_file():
            log.info("%s: ImageNet weights from %s", arch, path)
            return path
    if download:
        return _download(arch, url, candidates[0], timeout)
    looked = ", ".join(str(p) for p in candidates)
    raise WeightsNotFoundError(
        f"ImageNet weights for {arch} were asked for (weights=imagenet) but {filename} is "
        f"not in torch's cache; looked for: {looked}. Copy the file (from {url}) to one of "
        f"these places, or set TORCH_HOME to a directory whose hub/checkpoints holds it, or "
        f"pass weights=/path/to/{filename}, or allow download=true on a machine with "
        f"internet access; or {fallback}."
    )


def _download(arch: str, url: str, target: Path, timeout: float) -> Path:
    """Download ``url`` to ``target`` with a socket timeout (an offline machine fails fast)."""
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
