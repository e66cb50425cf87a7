from __future__ import annotations

import pytest
import torch

from medtransfer.models import ARCHS, MODELS, create


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_a_batch_to_its_feature_dim(name: str) -> None:
    model = create(name)
    with torch.inference_mode():
        out = model(torch.randn(2, model.card.input.in_chans, 32, 32))
    assert out.shape == (2, model.card.feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_card_names_a_registered_architecture(name: str) -> None:
    assert MODELS.get(name).arch in ARCHS


def test_random_init_is_reproducible() -> None:
    a, b = create("resnet18-small"), create("resnet18-small")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_create_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    create("test-cnn")
    assert torch.equal(torch.rand(1), expected)


def test_small_stem_keeps_resolution() -> None:
    small = create("resnet18-small")
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, torch.nn.Identity)
    # the 28 px image reaches layer4 as a 4x4 map (28 -> 28 -> 14 -> 7 -> 4)
    x = torch.zeros(1, 3, 28, 28)
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(small, name)(x)
    assert x.shape[-2:] == (4, 4)


def test_densenet_keeps_torchvision_key_names() -> None:
    keys = list(create("densenet121").state_dict())
    assert keys[0] == "features.conv0.weight" and not any(k.startswith("classifier") for k in keys)
