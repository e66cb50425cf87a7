"""Backbone architectures: torchvision ResNets/DenseNet, timm ViTs, the MedMNIST small-image stems, tiny test nets.

Every builder returns a module whose forward maps (B, C, H, W) images to pooled (B, D) features.
"""

from __future__ import annotations

import math
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


def _same_pads(x: torch.Tensor, kernel: int, stride: int) -> list[int]:
    """F.pad amounts for TensorFlow's 'SAME' padding: the odd pixel goes to the bottom/right, not split evenly."""
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'SAME' padding; same parameters and state-dict keys as the conv it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, _same_pads(x, self.kernel_size[0], self.stride[0]))
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MaxPool2dSame(nn.MaxPool2d):
    """nn.MaxPool2d with TensorFlow 'SAME' padding (padded pixels are -inf, so they never win the max)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = int(self.kernel_size), int(self.stride)  # type: ignore[call-overload]
        return nn.functional.max_pool2d(nn.functional.pad(x, _same_pads(x, k, s), value=-math.inf), k, s)


def _resnet_tf_same(depth: int, in_chans: int) -> nn.Module:
    """torchvision ResNet whose strided convs and max-pool pad like TensorFlow/Haiku 'SAME'.

    BYOL's Haiku ResNet-50 pads asymmetrically; run with PyTorch's symmetric padding its features shift by a
    pixel at every stride and linear top-1 drops from 74.6% to ~70% (google-deepmind/deepmind-research#84).
    The state-dict keys are torchvision's, so converted weights load unchanged.
    """
    model = _resnet(depth, in_chans, small=False)
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.stride[0] > 1:
                same = Conv2dSame(child.in_channels, child.out_channels, child.kernel_size, child.stride, 0,
                                  bias=child.bias is not None)
                setattr(parent, child_name, same)
    model.maxpool = MaxPool2dSame(3, 2)
    return model


def _vit(timm_name: str, in_chans: int, **kwargs: int) -> nn.Module:
    """A timm Vision Transformer returning the final-norm CLS token (``num_classes=0``, ``global_pool='token'``).

    Its keys are timm's (``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv.weight`` ...), which are also DINO's.
    Position embeddings are interpolated for other input sizes (``dynamic_img_size``), so non-224 inputs run.
    """
    import timm  # imported here: building a ResNet should not pay for timm's import

    return timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_chans, global_pool="token",
                             dynamic_img_size=True, **kwargs)


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
    """A 2-layer CNN (16-d features) for fast registry-wide tests on CPU; `dims=3` for volumes."""

    def __init__(self, in_chans: int = 3, width: int = 16, *, dims: int = 2) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.body = nn.Sequential(
            conv(in_chans, 8, 3, stride=2, padding=1), norm(8), nn.ReLU(inplace=True),
            conv(8, width, 3, stride=2, padding=1), norm(width), nn.ReLU(inplace=True),
            pool, nn.Flatten(),
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
ARCHS.add("resnet50-tfsame", lambda c: _resnet_tf_same(50, c))
ARCHS.add("densenet121", DenseNetBackbone)
ARCHS.add("vit-s16", lambda c: _vit("vit_small_patch16_224", c))
ARCHS.add("vit-b16", lambda c: _vit("vit_base_patch16_224", c))
ARCHS.add("small-cnn", SmallCNN)
ARCHS.add("test-cnn", TinyCNN)
# A 16-d, 2-block ViT with ViT-S/16's key names, for fast converter tests.
ARCHS.add("test-vit", lambda c: _vit("vit_small_patch16_224", c, img_size=32, patch_size=8, embed_dim=16, depth=2,
                                     num_heads=2))


def build(arch: str, in_chans: int = 3, *, seed: int = 0) -> nn.Module:
    """The architecture `arch` at its fixed-seed random initialisation, without touching the global RNG.

    "Random init" is then one reproducible model (whose features can be cached), and converting a checkpoint
    into it is deterministic.
    """
    builder = ARCHS.get(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(in_chans)
