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


def test_tf_same_padding_puts_the_odd_pixel_bottom_right() -> None:
    from medtransfer.models.backbones import Conv2dSame, MaxPool2dSame, build

    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8)
    conv = Conv2dSame(2, 3, 3, stride=2, bias=False)
    # TF 'SAME', 3x3 stride 2 on 8 px: 1 pixel of padding in total, all of it after (0 before, 1 after)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    pool = MaxPool2dSame(3, 2)
    expected = torch.nn.functional.max_pool2d(torch.nn.functional.pad(x, (0, 1, 0, 1), value=-float("inf")), 3, 2)
    torch.testing.assert_close(pool(x), expected)
    same, plain = build("resnet50-tfsame"), build("resnet50")
    assert list(same.state_dict()) == list(plain.state_dict())  # BYOL's converted weights load into either


def test_vit_feature_is_the_cls_token() -> None:
    from medtransfer.models.backbones import build

    vit = build("test-vit").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        tokens = vit.forward_features(x)  # (B, 1 + patches, D), after the final norm
        assert torch.equal(vit(x), tokens[:, 0])
        assert vit(torch.randn(1, 3, 48, 48)).shape == (1, 16)  # other sizes: position embeddings interpolated
