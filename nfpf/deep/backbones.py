"""Convolutional backbones: the CIFAR-stem ResNet-18 and a small CNN for CPU runs.

A backbone maps images (n, C, H, W) to pooled features (n, ``out_dim``); heads are added by
the modules that use it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from nfpf.deep.weights import load_matching, load_state_dict_file

__all__ = ["BACKBONES", "SmallCNN", "build_backbone", "resnet18_backbone"]

log = logging.getLogger(__name__)

BACKBONES = ("resnet18", "small_cnn")


class SmallCNN(nn.Module):
    """Four 3×3 conv–BN–ReLU blocks, 2×2 max-pool after the first three, global average pool.

    Channels ``width, 2·width, 4·width, 8·width`` (``out_dim = 8·width``). With width 32 it
    has 0.39 M parameters and about 4 M multiply-adds per 32×32 image with ``stem_stride=2``
    (15 M with 1): SimCLR on a few thousand CIFAR images takes minutes on a CPU. Works for
    any input of at least 1×1 pixel (pooling is skipped once the map is 1 pixel high or wide).

    Parameters
    ----------
    in_channels : int
    width : int
        Channels of the first block.
    stem_stride : int
        Stride of the first conv.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, stem_stride: int = 1):
        super().__init__()
        chans = [int(in_channels), width, 2 * width, 4 * width, 8 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False,
                                    stride=stem_stride if i == 0 else 1),
                          nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True))
            for i in range(4)
        )
        self.out_dim = chans[-1]

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 3 and min(x.shape[-2:]) >= 2:
                x = nn.functional.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))


def resnet18_backbone(in_channels: int = 3, cifar_stem: bool = True,
                      weights_path: Path | None = None) -> nn.Module:
    """torchvision ResNet-18 without its classifier (``fc`` = identity, ``out_dim`` = 512).

    Parameters
    ----------
    in_channels : int
        3 for RGB; 1 builds a grey first conv (only without pretrained weights for it).
    cifar_stem : bool, default True
        First conv 3×3 stride 1 (padding 1) and no max-pool: the small-image stem of the
        released NFPF code. False keeps ImageNet's 7×7 stride-2 conv and max-pool.
    weights_path : Path, optional
        A weights file for torchvision's ``resnet18`` (e.g. the ImageNet one); tensors whose
        shapes differ from this model (a replaced stem, any ``fc``) keep their random init.
    """
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        net.fc = nn.Identity()
        if cifar_stem or in_channels != 3:
            state = {k: v for k, v in state.items() if not k.startswith("conv1.")}
        _replace_stem(net, in_channels, cifar_stem)
        fresh = load_matching(net, state, "resnet18", weights_path)
        if fresh:
            log.info("resnet18: %d tensors from %s; newly initialised: %s",
                     len(net.state_dict()) - len(fresh), weights_path.name, ", ".join(fresh))
    else:
        net.fc = nn.Identity()
        _replace_stem(net, in_channels, cifar_stem)
    net.out_dim = 512
    return net


def _replace_stem(net: nn.Module, in_channels: int, cifar_stem: bool) -> None:
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")


def build_backbone(name: str, in_channels: int, width: int = 32, stem_stride: int = 1) -> nn.Module:
    """``"resnet18"`` (CIFAR stem, random init) or ``"small_cnn"`` (:class:`SmallCNN`;
    ``width`` and ``stem_stride`` apply to it only)."""
    if name == "resnet18":
        return resnet18_backbone(in_channels, cifar_stem=True)
    if name == "small_cnn":
        return SmallCNN(in_channels, width, stem_stride)
    raise ValueError(f"backbone must be one of {list(BACKBONES)}; got {name!r}.")
