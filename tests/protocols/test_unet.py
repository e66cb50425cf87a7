"""U-Nets on medtransfer backbones: smp's holds the backbone's weights exactly; ours runs on its stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtransfer import models
from medtransfer.protocols._unet import StageUNet, build_unet


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_smp_unet_holds_the_backbone_weights(arch: str) -> None:
    from medtransfer.protocols._unet import SmpUNet

    net = models.create(arch)
    unet = build_unet(net, 1)
    assert isinstance(unet, SmpUNet)
    ours, theirs = net.state_dict(), unet.encoder.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert unet(torch.randn(1, 3, 40, 52)).shape == (1, 1, 40, 52)  # padded to 64 x 64 inside, cropped back


def test_a_checkpoint_that_does_not_fit_smp_lists_the_keys() -> None:
    from medtransfer.errors import CheckpointError
    from medtransfer.protocols._unet import SmpUNet

    net = models.create("resnet18")
    net.extra = nn.Linear(2, 2)  # a stray layer: its keys have no place in smp's encoder
    with pytest.raises(CheckpointError, match=r"do not fit smp's resnet18 encoder: missing \[\], unexpected "
                                              r"\['extra.bias', 'extra.weight'\]"):
        SmpUNet(net, 1)


SHAPES = [("resnet18-small", (2, 3, 28, 28)), ("small-cnn", (2, 3, 30, 26)), ("resnet18-3d-small", (1, 1, 12, 12, 12)),
          ("test-cnn3d", (1, 1, 9, 9, 9))]


@pytest.mark.parametrize(("name", "shape"), SHAPES)
def test_stage_unet_maps_any_size_to_per_pixel_logits(name: str, shape: tuple[int, ...]) -> None:
    net = models.create(name)
    unet = build_unet(net, 3)
    assert isinstance(unet, StageUNet)
    assert unet(torch.randn(*shape)).shape == (shape[0], 3, *shape[2:])
    assert {id(p) for p in unet.encoder_parameters()} == {id(p) for p in net.parameters()}  # shared weights
    assert len(unet.decoder) == len(unet.info.channels) - 1  # one decoder block per skip


def test_use_smp_false_puts_our_decoder_on_a_standard_resnet() -> None:
    assert isinstance(build_unet(models.create("resnet18"), 1, use_smp=False), StageUNet)
