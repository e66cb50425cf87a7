"""U-Nets on medtransfer backbones: segmentation-models-pytorch's for the standard 2D ResNets and DenseNet,
a U-Net decoder of our own on the stages of every other encoder (small stems, small-cnn, 3D encoders).

Either way the encoder holds the backbone's weights exactly: smp's encoder is loaded from the backbone's state
dict strictly (every key must land, or the error lists the strays), and our decoder runs on the backbone's own
modules (`models.encoders.encoder_stages`, checked by `check_all_used`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.errors import CheckpointError
from medtransfer.models.encoders import StageInfo, check_all_used, encoder_stages

SMP_ARCHS = ("resnet18", "resnet50", "densenet121")  # torchvision layouts smp's encoders share key for key
_DECODER = (256, 128, 64, 32, 16)  # smp's default decoder channels, deepest first


def _block(c_in: int, c_out: int, dims: int) -> nn.Sequential:
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True),
                         conv(c_out, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True))


class StageUNet(nn.Module):
    """A U-Net whose encoder is a backbone's stages: from the deepest map up, each decoder block upsamples to
    the next skip's size (any factor, 1 where a small stem keeps the resolution), concatenates it and applies
    two conv-BN-ReLU layers; a last block at the input's size and a 1x1 head give `n_out` logits per pixel."""

    def __init__(self, backbone: nn.Module, n_out: int) -> None:
        super().__init__()
        self.encoder, info = encoder_stages(backbone)
        check_all_used(backbone, self.encoder)
        self.info: StageInfo = info
        dims, channels = info.dims, info.channels
        # smp's widths, halved in 3D (3x3x3 convs at 256 channels cost 27x their 2D FLOPs per voxel) and capped
        # at twice the widest encoder map, so a tiny encoder does not get a decoder a hundred times its size
        cap = 2 * max(channels)
        widths = [max(16, min(cap, _DECODER[min(i, len(_DECODER) - 1)] // (dims - 1))) for i in range(len(channels))]
        blocks, c_in = [], channels[-1]
        for i, skip in enumerate(reversed(channels[:-1])):
            blocks.append(_block(c_in + skip, widths[i], dims))
            c_in = widths[i]
        self.decoder = nn.ModuleList(blocks)
        self.final = _block(c_in, 16, dims)
        self.head = (nn.Conv2d if dims == 2 else nn.Conv3d)(16, n_out, 1)
        self.mode = "bilinear" if dims == 2 else "trilinear"

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, skips = x.shape[2:], []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for block in self.decoder:
            skip = skips.pop()
            x = block(torch.cat([F.interpolate(x, size=skip.shape[2:], mode=self.mode, align_corners=False), skip], 1))
        x = self.final(F.interpolate(x, size=size, mode=self.mode, align_corners=False))
        return self.head(x)


class SmpUNet(nn.Module):
    """smp's ``Unet`` with the backbone's weights in its encoder; inputs are padded to a multiple of 32 (its
    five downsamplings) and the logits cropped back, so any image size works."""

    def __init__(self, backbone: nn.Module, n_out: int) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        card: Any = backbone.card
        self.net = smp.Unet(encoder_name=card.arch, encoder_weights=None, in_channels=card.input.in_chans,
                            classes=n_out)
        ours, theirs = backbone.state_dict(), self.net.encoder.state_dict()
        missing, unexpected = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        shapes = [k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(f"The weights of {card.name!r} do not fit smp's {card.arch} encoder: missing "
                                  f"{missing[:10]}, unexpected {unexpected[:10]}, other shapes {sorted(shapes)[:10]}.")
        nn.Module.load_state_dict(self.net.encoder, ours, strict=True)  # smp's override drops the result

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder  # type: ignore[no-any-return]

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.net.encoder.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph, pw = -h % 32, -w % 32
        out = self.net(F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > 32 else "constant"))
        return out[..., :h, :w]


def build_unet(backbone: nn.Module, n_out: int, *, use_smp: bool = True) -> nn.Module:
    """The U-Net for `backbone` (smp's where its layout allows and `use_smp`, else `StageUNet`)."""
    card = getattr(backbone, "card", None)
    if use_smp and card is not None and card.arch in SMP_ARCHS and card.dims == 2:
        return SmpUNet(backbone, n_out)
    return StageUNet(backbone, n_out)
