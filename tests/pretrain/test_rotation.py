"""Rotation task: a rotated image / cube gets its class, the classes are distinct, the loss falls."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from medtransfer.pretrain.rotation import ROTATIONS_2D, ROTATIONS_3D, rotate


def test_2d_classes_are_quarter_turns() -> None:
    img = torch.arange(16.0).view(1, 1, 4, 4).repeat(4, 1, 1, 1)
    out = rotate(img, torch.arange(4))
    for k in range(4):
        assert np.array_equal(out[k, 0].numpy(), np.rot90(img[0, 0].numpy(), k, axes=(0, 1)))
    assert len(ROTATIONS_2D) == 4


def test_a_rotated_cube_is_recognised_as_its_rotation_class() -> None:
    cube = torch.zeros(1, 1, 3, 3, 3)
    cube[0, 0, 0, 0, 0], cube[0, 0, 0, 0, 1], cube[0, 0, 0, 1, 0], cube[0, 0, 1, 0, 0] = 1, 2, 3, 4  # no symmetry
    # by hand: 90° about z is a quarter turn in the (H, W) plane of the (D, H, W) volume
    by_hand = np.rot90(cube[0, 0].numpy(), 1, axes=(1, 2))
    all_rots = rotate(cube.repeat(10, 1, 1, 1, 1), torch.arange(10))
    matches = [c for c in range(10) if np.array_equal(all_rots[c, 0].numpy(), by_hand)]
    assert matches == [1]  # class 1 is "90° about z", and no other class gives the same volume
    flat = {tuple(all_rots[c].flatten().tolist()) for c in range(10)}
    assert len(flat) == 10 == len(ROTATIONS_3D)  # ten distinct classes: each is identifiable from the volume


def test_180_about_x_and_y() -> None:
    cube = torch.rand(1, 1, 4, 4, 4)
    out = rotate(cube.repeat(2, 1, 1, 1, 1), torch.tensor([5, 8]))
    assert torch.equal(out[0], cube[0].flip(1).flip(2))  # class 5: 180° in the (D, H) plane
    assert torch.equal(out[1], cube[0].flip(1).flip(3))  # class 8: 180° in the (D, W) plane


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_falls_on_a_fixed_batch(dims: int, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor, volumes3d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("rotation", dims), images2d if dims == 2 else volumes3d)
    assert last < first
