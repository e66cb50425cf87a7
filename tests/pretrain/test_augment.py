"""Batched view augmentations: shapes, ranges, per-image randomness, and hand-checkable pieces."""

from __future__ import annotations

import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.pretrain.augment import (
    AUGMENTATIONS,
    augment,
    flip_rotate_intensity,
    gaussian_blur,
    hflip,
    random_equalize,
    random_resized_crop,
)


@pytest.mark.parametrize("sequence", AUGMENTATIONS)
@pytest.mark.parametrize("size", [28, 64])
def test_every_sequence_keeps_shape_and_range_and_draws_per_image(sequence: str, size: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size).repeat(6, 1, 1, 1)  # six copies of one image
    y = augment(x, sequence)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.allclose(y[0], y[1])  # each image gets its own random parameters


def test_flip_with_p1_is_a_mirror_and_full_crop_is_identity() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(hflip(x, p=1.0), x.flip(-1))
    same = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)


def test_blur_keeps_a_constant_image_and_smooths_a_dot() -> None:
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 9), flat, atol=1e-6)
    dot = torch.zeros(1, 3, 16, 16)
    dot[..., 8, 8] = 1.0
    out = gaussian_blur(dot, 9, sigma=(1.5, 1.5))
    assert float(out[0, 0, 8, 8]) < 1.0 and float(out[0, 0, 8, 9]) > 0.0
    assert float(out.sum()) == pytest.approx(3.0, rel=1e-4)  # blurring moves intensity, it keeps the total


def test_equalize_spreads_a_narrow_histogram() -> None:
    x = (0.4 + 0.1 * torch.rand(1, 1, 32, 32)).expand(1, 3, 32, 32).contiguous()
    y = random_equalize(x, p=1.0)
    assert float(y.max() - y.min()) > 0.8


def test_unknown_sequence_and_grey_input_raise_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'novel'"):
        augment(torch.rand(2, 3, 8, 8), "nvel")
    with pytest.raises(ConfigError, match="Repeat grey images to 3 channels"):
        augment(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("shape", [(4, 1, 12, 12), (4, 1, 8, 8, 8)])
def test_exemplar_augmentation_keeps_shape_and_range(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape)
    y = flip_rotate_intensity(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(x, y)
