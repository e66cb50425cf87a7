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


def test_medmnist_3d_resnet18_is_the_28px_resnet18_with_3d_convs() -> None:
    """MedMNIST v2's ResNet-18+3D = its 28 px 2D ResNet-18 through Conv3dConverter: every 2D conv (o, i, k, k)
    becomes (o, i, k, k, k) in the same order (one input channel instead of three), no max-pool, 28^3 -> 4^3."""
    net3d, net2d = create("resnet18-3d-small"), create("resnet18-small")
    convs3d = [tuple(p.shape) for p in net3d.parameters() if p.dim() == 5]
    convs2d = [tuple(p.shape) for p in net2d.parameters() if p.dim() == 4]
    inflated = [(o, 1 if j == 0 else i, k, k, k) for j, (o, i, k, _) in enumerate(convs2d)]
    assert convs3d == inflated
    norms = [tuple(p.shape) for p in net3d.parameters() if p.dim() == 1]
    assert norms == [tuple(p.shape) for p in net2d.parameters() if p.dim() == 1]  # BN affine params (+ none else)
    grid: list[tuple[int, ...]] = []
    net3d.layer4.register_forward_hook(lambda m, i, o: grid.append(tuple(o.shape[2:])))
    with torch.no_grad():
        net3d(torch.rand(1, 1, 28, 28, 28))
    assert grid == [(4, 4, 4)]  # stride-1 stem, no max-pool: 28 -> 28 -> 14 -> 7 -> 4
    assert (net3d.conv1.stride, net3d.conv1.padding) == ((1, 1, 1), (1, 1, 1))  # 'same' stem, as the 2D one
    card = MODELS.get("resnet18-3d-small").input
    assert (card.mean, card.std) == ((0.0,), (1.0,))  # MedMNIST3D feeds voxels / 255 unnormalised
