"""Patch grids on hand-made images, the classifier head, derangements."""

from __future__ import annotations

import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.pretrain._patches import classifier, derangement, encode_patches, grid_positions, patch_grid


def _labelled_cells(pps: int, cell: int, dims: int) -> torch.Tensor:
    """An image whose every grid cell holds its own row-major index as value: (1, 1, S, S[, S])."""
    idx = torch.arange(pps**dims, dtype=torch.float).view((pps,) * dims)
    for axis in range(dims):
        idx = idx.repeat_interleave(cell, dim=axis)
    return idx[None, None]


@pytest.mark.parametrize("dims", [2, 3])
def test_each_patch_comes_from_its_own_cell_whatever_the_jitter(dims: int) -> None:
    x = _labelled_cells(3, 6, dims)
    patches = patch_grid(x, 3, patch=4, stride=6, jitter=2, generator=torch.Generator().manual_seed(0))
    assert patches.shape == (1, 3**dims, 1) + (4,) * dims
    for p in range(3**dims):
        assert torch.all(patches[0, p] == p)  # a 4-px patch shifted by <= 2 px stays inside its 6-px cell


def test_grid_order_is_row_major() -> None:
    assert grid_positions(2, 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_grid_too_big_for_the_image_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError, match="options.pps"):
        patch_grid(torch.zeros(1, 1, 10, 10), 3, patch=4, stride=4, jitter=1)


def test_derangement_has_no_fixed_point() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 10):
        perm = derangement(n, g)
        assert sorted(perm.tolist()) == list(range(n)) and not torch.any(perm == torch.arange(n))
    with pytest.raises(ConfigError, match="at least 2"):
        derangement(1)


def test_classifier_and_patch_encoder_shapes() -> None:
    head = classifier(6, 5, (8,)).eval()
    assert head(torch.randn(3, 6)).shape == (3, 5)
    enc = encode_patches(torch.nn.Flatten(), torch.zeros(2, 9, 1, 4, 4))
    assert enc.shape == (2, 9, 16)
