"""3D backbones (MONAI): volumes (B, C, D, H, W) -> pooled (B, D) features, registered into ``ARCHS``.

MONAI is imported inside the builders, so importing the model registry stays cheap.
"""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.models.backbones import ARCHS, TinyCNN


def _monai_resnet(depth: int, in_chans: int, *, small: bool = False) -> nn.Module:
    from monai.networks.nets import resnet

    # MedMNIST v2's "ResNet-18+3D" is its 28 px (CIFAR-style) ResNet-18 put through ACSConv's Conv3dConverter:
    # a 3x3x3 stride-1 stem, no max-pool, 3x3x3 convs and 1x1x1 conv + BN shortcuts (MONAI's shortcut "B").
    stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True, "shortcut_type": "B",
            "bias_downsample": False} if small else {}
    # feed_forward=False: no classifier, forward ends conv1..layer4 -> avgpool -> flatten (512-d for 10/18/34)
    return getattr(resnet, f"resnet{depth}")(spatial_dims=3, n_input_channels=in_chans, feed_forward=False, **stem)


class UNetEncoder3D(nn.Module):
    """The down path of a 3D U-Net (Taleb et al. 2020's pretext encoder): conv blocks with max pooling.

    Four levels of two (conv 3x3x3 -> batch norm -> ReLU) blocks; `filters` channels at the first level,
    doubling per level; global average pooling gives ``filters * 2**(levels-1)`` features (128 by default).
    """

    def __init__(self, in_chans: int = 1, filters: int = 16, levels: int = 4) -> None:
        super().__init__()
        from monai.networks.blocks import Convolution

        layers: list[nn.Module] = []
        c_in = in_chans
        for level in range(levels):
            c_out = filters * 2**level
            layers += [Convolution(3, c_in, c_out, norm="batch", act="relu"),
                       Convolution(3, c_out, c_out, norm="batch", act="relu")]
            if level < levels - 1:
                # ceil_mode: a 7-voxel patch (a 3x3x3 grid cell of a 28^3 volume) still reaches the last level
                layers.append(nn.MaxPool3d(2, ceil_mode=True))
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.feature_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, filters * 2**(levels-1))


ARCHS.add("resnet10-3d", lambda c: _monai_resnet(10, c))
ARCHS.add("resnet18-3d", lambda c: _monai_resnet(18, c))
ARCHS.add("resnet18-3d-small", lambda c: _monai_resnet(18, c, small=True))
ARCHS.add("unet-encoder-3d", UNetEncoder3D)
ARCHS.add("test-cnn3d", lambda c: TinyCNN(c, dims=3))
