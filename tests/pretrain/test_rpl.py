"""Relative patch location: a patch pair gets its relative position; the loss falls in 2D and 3D."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from medtransfer.pretrain._patches import grid_positions, patch_grid
from medtransfer.pretrain.rpl import rpl_offsets, rpl_pairs


def test_offsets_list_the_eight_and_twenty_six_neighbours() -> None:
    assert rpl_offsets(2) == [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    assert len(rpl_offsets(3)) == 26 and (0, 0, 0) not in rpl_offsets(3)


@pytest.mark.parametrize("dims", [2, 3])
def test_a_patch_pair_gets_its_relative_position(dims: int) -> None:
    cells = grid_positions(3, dims)
    # each cell of the image holds its own index, so a patch tells where it was cut
    idx = torch.arange(3**dims, dtype=torch.float).view((3,) * dims)
    for axis in range(dims):
        idx = idx.repeat_interleave(4, dim=axis)
    patches = patch_grid(idx[None, None], 3, patch=3, stride=4, jitter=1)
    offsets = rpl_offsets(dims)
    for label, offset in enumerate(offsets):
        centre, other = rpl_pairs(patches, torch.tensor([label]))
        c_pos, o_pos = cells[int(centre.flatten()[0])], cells[int(other.flatten()[0])]
        assert tuple(o - c for o, c in zip(o_pos, c_pos, strict=True)) == offset
        assert c_pos == (1,) * dims


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_falls_on_a_fixed_batch(dims: int, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor, volumes3d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("rpl", dims), images2d if dims == 2 else volumes3d)
    assert last < first
