"""SimCLR: NT-Xent against the formula written out by hand, the reference head, and a falling loss."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from medtransfer import models
from medtransfer.pretrain import PretrainConfig
from medtransfer.pretrain.simclr import SimCLR, two_views


def _nt_xent_reference(z0: torch.Tensor, z1: torch.Tensor, tau: float) -> float:
    """NT-Xent (Chen et al. 2020, eq. 1) with explicit loops: every one of the 2B views is an anchor."""
    z = torch.cat([z0, z1])
    z = z / z.norm(dim=1, keepdim=True)
    n, b = len(z), len(z0)
    total = 0.0
    for i in range(n):
        j = (i + b) % n  # the other view of the same image
        sims = [math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / sum(sims))
    return total / n


def test_nt_xent_matches_the_hand_written_formula() -> None:
    torch.manual_seed(0)
    z0, z1 = torch.randn(5, 8), torch.randn(5, 8)
    cfg = PretrainConfig("simclr", "phantom-binary-32", model="test-cnn", options={"hidden_dim": 8, "out_dim": 8})
    method = SimCLR(models.create("test-cnn"), 16, cfg, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert float(method.loss(z0, z1)) == pytest.approx(_nt_xent_reference(z0, z1, 0.07), rel=1e-5)


def test_projection_head_is_the_reference_512_512_128_mlp() -> None:
    cfg = PretrainConfig("simclr", "phantom-binary-32")
    method = SimCLR(nn.Identity(), 512, cfg, mean=(0.5,) * 3, std=(0.5,) * 3)
    linears = [m for m in method.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 128)]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in method.head.modules())
    assert method.loss.temperature == pytest.approx(0.07)


def test_two_views_differ_and_grey_backbones_get_one_channel(images2d: torch.Tensor) -> None:
    torch.manual_seed(0)
    v0, v1 = two_views(images2d, "natural", lambda x: x)
    assert v0.shape == images2d.shape and not torch.equal(v0, v1)
    g0, _ = two_views(images2d[:, :1], "simple", lambda x: x)
    assert g0.shape == images2d[:, :1].shape


def test_simclr_loss_falls_on_a_fixed_batch(build_method: Callable, loss_drop: Callable,
                                            images2d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("simclr", 2), images2d)
    assert last < first
