"""Backbone architectures: torchvision ResNets/DenseNet, the MedMNIST small-image stems, and tiny test nets.

Every builder returns a module whose forward maps (B, C, H, W) images to pooled (B, D) features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from medtransfer.registry import Registry

ArchBuilder = Callable[[int], nn.Module]
ARCHS: Registry[ArchBuilder] = Registry("architecture")


def _adapt_stem(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    if in_chans == conv.in_channels:
        return conv
    return nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)


def _resnet(depth: int, in_chans: int, *, small: bool) -> nn.Module:
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    if small:
        # MedMNIST's 28 px ResNets (CIFAR style): 3x3 stride-1 stem and no max-pool, so a 28 px image still
        # reaches layer4 as a 4x4 map instead of 1x1.
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = _adapt_stem(model.conv1, in_chans)
    model.fc = nn.Identity()  # forward ends conv1..layer4 -> avgpool -> flatten, as the reference studies use
    return model


class DenseNetBackbone(nn.Module):
    """torchvision DenseNet-121 features -> ReLU -> global average pool -> flatten (1024-d).

    Keeps torchvision's module names (``features.*``) so published state dicts load without renaming.
    """

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        net = torchvision.models.densenet121(weights=None)
        net.features.conv0 = _adapt_stem(net.features.conv0, in_chans)
        self.features = net.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.features(x))  # (B, 1024, h, w)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, 1024)


class TinyCNN(nn.Module):
    """A 2-layer CNN (16-d features) for fast registry-wide tests on CPU."""

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 16)


class SmallCNN(nn.Module):
    """Three VGG-style blocks (16-32-64 channels) with global max pooling: 64-d features.

    A light from-scratch baseline for small images. Max pooling keeps a small, local finding (a lesion a few
    pixels wide) from being averaged away over the whole image.
    """

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_chans, *widths[:-1]), widths, strict=True):
            for conv_in in (c_in, c_out):
                layers += [nn.Conv2d(conv_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                           nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 64)


ARCHS.add("resnet18", lambda c: _resnet(18, c, small=False))
ARCHS.add("resnet50", lambda c: _resnet(50, c, small=False))
ARCHS.add("resnet18-small", lambda c: _resnet(18, c, small=True))
ARCHS.add("resnet50-small", lambda c: _resnet(50, c, small=True))
ARCHS.add("densenet121", DenseNetBackbone)
ARCHS.add("small-cnn", SmallCNN)
ARCHS.add("test-cnn", TinyCNN)
