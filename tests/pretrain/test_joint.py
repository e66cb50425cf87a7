"""BYOL, MoCo-v2, Barlow Twins: the loss falls on a fixed batch; the momentum branch follows without gradients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


@pytest.mark.parametrize("method", ["byol", "mocov2", "barlowtwins"])
def test_loss_falls_on_a_fixed_batch(method: str, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor) -> None:
    # memory_bank=0 for MoCo: a bank filling up with keys raises the loss whatever the weights do
    first, last = loss_drop(build_method(method, 2, memory_bank=0), images2d)
    assert last < first


@pytest.mark.parametrize("method", ["byol", "mocov2"])
def test_momentum_branch_has_no_gradient_and_follows_the_online_one(method: str, build_method: Callable,
                                                                    images2d: torch.Tensor) -> None:
    m = build_method(method, 2, memory_bank=0, momentum=0.5)
    assert not any(p.requires_grad for p in m.backbone_momentum.parameters())
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)  # move the online weights away from the copy
    before = [p.clone() for p in m.backbone_momentum.parameters()]
    m(images2d, progress=0.0)
    moved = [not torch.equal(a, p) for a, p in zip(before, m.backbone_momentum.parameters(), strict=True)]
    assert all(moved)


@pytest.mark.parametrize("method", ["simclr", "byol", "mocov2", "barlowtwins"])
def test_under_bf16_autocast_the_loss_is_computed_in_fp32(method: str, build_method: Callable,
                                                          images2d: torch.Tensor) -> None:
    m = build_method(method, 2, memory_bank=0)
    z0, z1 = torch.randn(8, 64).bfloat16(), torch.randn(8, 64).bfloat16()  # projections as bf16-mixed makes them
    expected = m.loss(z0.float(), z1.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.fp32_loss(z0, z1)
        whole = m(images2d)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert whole.dtype == torch.float32 and torch.isfinite(whole)
