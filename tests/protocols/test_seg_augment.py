"""Segmentation augmentations: the mask moves with the image, the same (seed, step) gives the same batch."""

from __future__ import annotations

import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.protocols._seg_augment import augment_pairs


@pytest.mark.parametrize("name", ["flip", "hosseinzadeh2021"])
def test_geometry_moves_mask_and_image_together(name: str) -> None:
    y = torch.zeros(16, 24, 24, dtype=torch.long)
    y[:, 5:14, 3:11] = 1  # an off-centre square
    x = y[:, None].float().expand(-1, 3, -1, -1).contiguous()  # an image equal to its mask
    xs, ys = augment_pairs(x, y, name, seed=0, step=3)
    assert ys.shape == y.shape and ys.dtype == torch.long and set(ys.unique().tolist()) <= {0, 1}
    if name == "flip":
        assert torch.equal(xs[:, 0].round().long(), ys)  # a flip moves both exactly
    else:  # warped (bilinear image, nearest mask) and maybe brightened: they still agree almost everywhere
        agree = ((xs[:, 0] > 0.5 * xs[:, 0].amax((1, 2), keepdim=True)) == ys.bool()).float().mean()
        assert agree > 0.95
    assert not torch.equal(ys, y)  # something moved in a batch of 16


def test_seeded_by_step() -> None:
    x, y = torch.rand(4, 1, 16, 16), torch.randint(0, 3, (4, 16, 16))
    a = augment_pairs(x, y, "hosseinzadeh2021", seed=1, step=7)
    b = augment_pairs(x, y, "hosseinzadeh2021", seed=1, step=7)
    c = augment_pairs(x, y, "hosseinzadeh2021", seed=1, step=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_volumes_flip_on_every_axis() -> None:
    y = torch.zeros(32, 6, 6, 6, dtype=torch.long)
    y[:, 0, 0, 0] = 1
    _, ys = augment_pairs(y[:, None].float(), y, "flip", seed=0, step=0)
    corners = {tuple(torch.nonzero(v)[0].tolist()) for v in ys}
    assert len(corners) == 8  # 32 volumes reach all 8 corners


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match="The 'augment' parameter of segment must be one of"):
        augment_pairs(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "elastic", seed=0, step=0)
