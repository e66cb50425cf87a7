"""Batched affine augmentations: shapes, range, and randomness that depends only on (seed, step)."""

from __future__ import annotations

import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.protocols._augment import _rrc_flip, _zoom_flip, augment, step_generator


def test_augment_is_a_function_of_seed_and_step() -> None:
    x = torch.rand(4, 3, 20, 20)
    a = augment(x, "rrc_flip", size=16, seed=0, step=5)
    assert a.shape == (4, 3, 16, 16) and 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, augment(x, "rrc_flip", size=16, seed=0, step=5))
    assert not torch.equal(a, augment(x, "rrc_flip", size=16, seed=0, step=6))
    flips = augment(x, "zoom_flip", size=20, seed=1, step=0)
    assert flips.shape == x.shape


def test_none_keeps_the_batch_or_resizes_it() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(augment(x, "none", size=4, seed=0, step=0), x)
    assert augment(x, "none", size=2, seed=0, step=0).shape == (1, 1, 2, 2)


def test_random_maps_stay_inside_the_image_and_in_range() -> None:
    g = step_generator(0, 0, torch.device("cpu"))
    rrc = _rrc_flip(1000, g, torch.device("cpu"))  # (B, 2, 3): [[±w, 0, cx], [0, h, cy]]
    w, h = rrc[:, 0, 0].abs(), rrc[:, 1, 1]
    assert torch.all(w <= 1) and torch.all(h <= 1)
    assert torch.all(rrc[:, 0, 2].abs() + w <= 1 + 1e-6) and torch.all(rrc[:, 1, 2].abs() + h <= 1 + 1e-6)
    assert 0.4 < (rrc[:, 0, 0] < 0).float().mean() < 0.6  # about half the crops are mirrored
    assert torch.all(w * h >= 0.08 - 1e-6)  # at least the smallest RandomResizedCrop area share
    zoom = _zoom_flip(1000, g, torch.device("cpu"))
    scale = zoom[:, 0, 0].abs()
    assert torch.all(scale >= 1 / 1.15 - 1e-6) and torch.all(scale <= 1 / 0.85 + 1e-6)
    assert torch.equal(zoom[:, 0, 0].abs(), zoom[:, 1, 1].abs())  # the same zoom on both axes


def test_unknown_augmentation_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="'augment' parameter must be one of"):
        augment(torch.zeros(1, 1, 4, 4), "mixup", size=4, seed=0, step=0)


def test_the_rotated_crop_turns_by_at_most_seven_degrees() -> None:
    import math

    from medtransfer.protocols._augment import _rrc_flip_rot7

    g1, g2 = (step_generator(3, 1, torch.device("cpu")) for _ in range(2))
    crop, rotated = _rrc_flip(500, g1, torch.device("cpu")), _rrc_flip_rot7(500, g2, torch.device("cpu"))
    # the same crop stream, then a rotation: undo the crop's diagonal scale and read the angle off the matrix
    a = rotated[:, :, :2] / torch.stack([crop[:, 0, 0], crop[:, 1, 1]], -1)[..., None]
    angle = torch.atan2(a[:, 1, 0], a[:, 1, 1]).abs() * 180 / math.pi
    assert torch.all(angle <= 7 + 1e-4) and angle.max() > 5  # within RandomRotation(7), and it does rotate
    assert torch.allclose(rotated[:, :, 2], crop[:, :, 2])  # the crop's position is kept
    x = torch.rand(2, 1, 12, 12)
    assert augment(x, "rrc_flip_rot7", size=8, seed=0, step=0).shape == (2, 1, 8, 8)
