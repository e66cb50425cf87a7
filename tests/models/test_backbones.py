from __future__ import annotations

import torch

from medtransfer.models import create


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
