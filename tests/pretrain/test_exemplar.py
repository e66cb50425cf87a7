"""Exemplar: the triplet loss on hand-worked cases, and a falling loss in 2D and 3D."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from medtransfer.pretrain.exemplar import triplet_loss


def test_triplet_loss_hand_worked() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # mean squared distance 1, then 0
    n = torch.tensor([[0.0, 0.0], [3.0, 1.0]])  # 0, then 2
    # sample 1: max(0, 1 - 0 + 1) = 2; sample 2: max(0, 0 - 2 + 1) = 0; mean 1
    assert float(triplet_loss(a, p, n)) == pytest.approx(1.0)
    assert float(triplet_loss(a, p, n, margin=0.0)) == pytest.approx(0.5)


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_falls_on_a_fixed_batch(dims: int, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor, volumes3d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("exemplar", dims), images2d if dims == 2 else volumes3d)
    assert last < first
