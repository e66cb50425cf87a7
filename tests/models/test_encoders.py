"""U-Net encoders from backbones: every backbone tensor used, channels and strides as the maps come out."""

from __future__ import annotations

import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.models import create
from medtransfer.models.backbones import build
from medtransfer.models.encoders import check_all_used, encoder_stages

EXPECTED = {
    "resnet18": ((64, 64, 128, 256, 512), (2, 4, 8, 16, 32)),
    "resnet18-small": ((64, 64, 128, 256, 512), (1, 1, 2, 4, 8)),  # no stem stride, no max-pool
    "densenet121": ((64, 256, 512, 1024, 1024), (2, 4, 8, 16, 32)),
    "small-cnn": ((16, 32, 64), (1, 2, 4)),
    "test-cnn": ((8, 16), (2, 4)),
    "resnet18-3d-small": ((64, 64, 128, 256, 512), (1, 1, 2, 4, 8)),  # MONAI's skipped max-pool is skipped here too
    "unet-encoder-3d": ((16, 32, 64, 128), (1, 2, 4, 8)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stages_share_the_backbone_and_reach_its_features(name: str) -> None:
    model = create(name)
    stages, info = encoder_stages(model)
    assert (info.channels, info.strides) == EXPECTED[name]
    check_all_used(model, stages)  # raises if a weight is left out
    assert {id(p) for p in stages.parameters()} == {id(p) for p in model.parameters()}  # shared, not copied
    if name.startswith("resnet18") and info.dims == 2:  # the last stage's pooled map is the backbone's feature
        x = torch.randn(2, 3, 32, 32)
        h = x
        for stage in stages:
            h = stage(h)
        torch.testing.assert_close(h.mean((2, 3)), model(x))


def test_backbones_without_an_encoder_are_refused() -> None:
    with pytest.raises(ConfigError, match="TF 'SAME' padding"):
        encoder_stages(build("resnet50-tfsame"))
    with pytest.raises(ConfigError, match="no multi-scale feature maps for a U-Net encoder"):
        encoder_stages(build("test-vit"))


def test_a_left_out_tensor_is_named() -> None:
    model = create("test-cnn")
    stages, _ = encoder_stages(model)
    with pytest.raises(ConfigError, match=r"leaves 7 of the backbone's tensors unused \(first: \['body.3.weight'"):
        check_all_used(model, stages[:1])
