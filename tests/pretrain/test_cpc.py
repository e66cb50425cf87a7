"""CPC: context and predicted rows, positives from the same column, negatives never from it; loss falls."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from medtransfer.pretrain.cpc import cpc_negatives, cpc_rows, cpc_score


def test_rows_follow_the_reference_setups() -> None:
    assert cpc_rows(5, 2) == ([0, 1], [3, 4])  # 2D: pps 5, one row skipped below the context
    assert cpc_rows(4, 3) == ([0, 1], [2, 3])  # 3D: pps 4, no skip


def test_negatives_come_from_another_column_or_image_at_the_same_row() -> None:
    b, r, k = 3, 4, 5
    # code (b, row, col) = [b, row, col]: each code says where it was taken
    codes = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(r), torch.arange(k), indexing="ij"), -1).float()
    neg = cpc_negatives(codes, torch.Generator().manual_seed(0))
    assert neg.shape == codes.shape
    assert torch.equal(neg[..., 1], codes[..., 1])  # same row
    same_source = (neg[..., 0] == codes[..., 0]) & (neg[..., 2] == codes[..., 2])
    assert not same_source.any()  # never the positive's own (image, column)
    # one draw per (image, column): all rows of a negative column come from one source column
    assert torch.all(neg[:, :, :, 0] == neg[:, :1, :, 0]) and torch.all(neg[:, :, :, 2] == neg[:, :1, :, 2])


def test_score_is_sigmoid_of_mean_dot_product() -> None:
    pred = torch.ones(1, 2, 1, 3)
    target = torch.full((1, 2, 1, 3), 2.0)
    assert float(cpc_score(pred, target)) == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_falls_on_a_fixed_batch(dims: int, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor, volumes3d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("cpc", dims), images2d if dims == 2 else volumes3d)
    assert last < first
