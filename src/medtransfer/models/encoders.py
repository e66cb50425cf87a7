"""Multi-scale feature maps of a backbone, for dense prediction (the encoder of a U-Net).

`encoder_stages(model)` splits a medtransfer backbone (what `create` returns) into the stages a U-Net takes
its skip connections from, shallow to deep, with each stage's channels and its output stride. The stages are
the backbone's own modules, not copies: weights loaded into the backbone (a zoo checkpoint, a model folder,
pretraining here) are the encoder's weights, and `check_all_used` proves every backbone parameter is in one.

    stages, info = encoder_stages(create("resnet18-small"))
    info.channels   # (64, 64, 128, 256, 512)
    info.strides    # (1, 1, 2, 4, 8): the small stem keeps full resolution, so two skips share a size
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from medtransfer.errors import ConfigError


@dataclass(frozen=True)
class StageInfo:
    """Channels and output stride of each stage, shallow to deep (timm's ``feature_info``)."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    dims: int = 2


def _resnet_stages(m: Any) -> list[nn.Module]:  # Any: torchvision's and MONAI's attributes
    """torchvision and MONAI ResNets: stem (conv, BN, ReLU), max-pool + layer1, layer2, layer3, layer4."""
    act = m.relu if hasattr(m, "relu") else m.act
    pool = nn.Identity() if getattr(m, "no_max_pool", False) else m.maxpool  # MONAI keeps a max-pool it skips
    return [nn.Sequential(m.conv1, m.bn1, act), nn.Sequential(pool, m.layer1), m.layer2, m.layer3, m.layer4]


def _densenet_stages(m: Any) -> list[nn.Module]:
    """DenseNet-121 (``features``): stem, then each dense block with the transition before it; the last one
    ends with norm5 + ReLU, as the pooled features do."""
    f = m.features
    return [nn.Sequential(f.conv0, f.norm0, f.relu0), nn.Sequential(f.pool0, f.denseblock1),
            nn.Sequential(f.transition1, f.denseblock2), nn.Sequential(f.transition2, f.denseblock3),
            nn.Sequential(f.transition3, f.denseblock4, f.norm5, nn.ReLU(inplace=False))]


def _split_at(layers: list[nn.Module], kinds: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    """Sequential stages cut *before* every layer of `kinds` (pools): a U-Net level ends before its pooling."""
    stages: list[list[nn.Module]] = [[]]
    for layer in layers:
        if isinstance(layer, kinds) and stages[-1]:
            stages.append([])
        stages[-1].append(layer)
    return [nn.Sequential(*s) for s in stages]


def _body_stages(m: Any) -> list[nn.Module]:
    """SmallCNN, TinyCNN and the 3D U-Net encoder: their ``body`` without the global pooling and flatten."""
    layers = [layer for layer in m.body if not isinstance(layer, (nn.Flatten, nn.AdaptiveAvgPool2d,
                                                                  nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool3d))]
    pools = (nn.MaxPool2d, nn.MaxPool3d)
    if any(isinstance(layer, pools) for layer in layers):
        while isinstance(layers[-1], pools):  # a pool after the last level only feeds the global pooling
            layers.pop()
        return _split_at(layers, pools)
    convs = (nn.Conv2d, nn.Conv3d)  # TinyCNN downsamples with strided convs: one stage per conv
    return _split_at(layers, convs)


def _stages(model: Any) -> list[nn.Module]:
    arch = getattr(getattr(model, "card", None), "arch", type(model).__name__)
    if hasattr(model, "layer4") and hasattr(model, "conv1"):
        if isinstance(getattr(model.conv1, "padding", None), str) or type(model.conv1).__name__ == "Conv2dSame":
            raise ConfigError(f"The {arch!r} backbone (TF 'SAME' padding) has no U-Net encoder here; convert the "
                              "checkpoint to the torchvision 'resnet50' architecture instead.")
        return _resnet_stages(model)
    if hasattr(model, "features") and hasattr(model.features, "denseblock4"):
        return _densenet_stages(model)
    if isinstance(getattr(model, "body", None), nn.Sequential):
        return _body_stages(model)
    raise ConfigError(f"The {arch!r} backbone has no multi-scale feature maps for a U-Net encoder (vision "
                      "transformers have one scale). Use a ResNet, DenseNet, small-cnn or a 3D encoder.")


def encoder_stages(model: nn.Module) -> tuple[nn.ModuleList, StageInfo]:
    """The backbone's stages (sharing its modules) and their channels and output strides.

    Raises:
        ConfigError: for a backbone without multi-scale maps (ViTs) or with TF 'SAME' padding.
    """
    import torch

    stages = nn.ModuleList(_stages(model))
    dims = 3 if any(isinstance(m, nn.Conv3d) for m in model.modules()) else 2
    in_chans = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))).in_channels
    was_training = model.training
    model.eval()
    with torch.no_grad():  # one probe forward: channels and strides as the stages compute them
        side = 64
        x = torch.zeros(1, in_chans, *([side] * dims))
        channels, strides = [], []
        for stage in stages:
            x = stage(x)
            channels.append(int(x.shape[1]))
            strides.append(side // int(x.shape[-1]))
    model.train(was_training)
    return stages, StageInfo(tuple(channels), tuple(strides), dims)


def check_all_used(model: nn.Module, stages: nn.ModuleList) -> None:
    """Raise unless every parameter and buffer of the backbone sits in one of the stages (no weight left out)."""
    used = {id(t) for t in (*stages.parameters(), *stages.buffers())}
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if id(t) not in used]
    if left:
        raise ConfigError(f"The U-Net encoder leaves {len(left)} of the backbone's tensors unused "
                          f"(first: {left[:10]}); its weights would not all be transferred.")
