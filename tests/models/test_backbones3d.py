"""Every registered 3D encoder builds from its card and maps volumes to its feature dim."""

from __future__ import annotations

import pytest
import torch

from medtransfer.models import ARCHS, MODELS, create

CARDS_3D = [n for n in MODELS.names() if MODELS.get(n).dims == 3]


def test_the_3d_encoders_are_registered() -> None:
    assert {"resnet18-3d", "resnet10-3d", "unet-encoder-3d", "test-cnn3d"} <= set(CARDS_3D)
    assert all(MODELS.get(n).arch in ARCHS for n in CARDS_3D)


@pytest.mark.parametrize("name", CARDS_3D)
@pytest.mark.parametrize("side", [16, 7])  # a whole small volume, and one 3x3x3-grid patch of a 28^3 volume
def test_encoder_maps_volumes_to_card_feature_dim(name: str, side: int) -> None:
    model = create(name)
    with torch.no_grad():
        out = model(torch.rand(2, 1, side, side, side))
    assert out.shape == (2, MODELS.get(name).feature_dim)
    assert torch.isfinite(out).all()
