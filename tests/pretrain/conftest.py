"""Tiny phantom batches and a few-step training loop shared by the pretraining tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from medtransfer import data, models
from medtransfer.pretrain import METHODS, PretrainConfig, SSLMethod

# test-sized heads: the methods' paper defaults (2048-wide heads, 1024-d codes) are not what these tests check
TINY_OPTIONS = {"hidden": [32], "hidden_dim": 32, "out_dim": 16, "code_size": 16, "context_size": 16,
                "memory_bank": 32}


@pytest.fixture(scope="session")
def images2d() -> torch.Tensor:
    """8 phantom images (32 px), RGB in [0, 1]: (8, 3, 32, 32)."""
    x = data.load("phantom-binary-32", "train", n=8).images(np.arange(8))
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).expand(-1, 3, -1, -1).contiguous()


@pytest.fixture(scope="session")
def volumes3d() -> torch.Tensor:
    """4 phantom volumes (28^3), grey in [0, 1]: (4, 1, 28, 28, 28)."""
    x = data.load("phantom3d-binary-28", "train", n=4).images(np.arange(4))
    return torch.from_numpy(x).movedim(-1, 1).float().div(255).contiguous()


def _build(method: str, dims: int, **options: Any) -> SSLMethod:
    torch.manual_seed(0)
    backbone = models.create("test-cnn" if dims == 2 else "test-cnn3d").train()
    cfg = PretrainConfig(method, "phantom-binary-32", options={**TINY_OPTIONS, **options})
    chans = 3 if dims == 2 else 1
    return METHODS.get(method).build(backbone, 16, cfg, mean=(0.5,) * chans, std=(0.5,) * chans, dims=dims)


@pytest.fixture
def build_method() -> Callable[..., SSLMethod]:
    """`build(method, dims, **options)`: a method on the tiny test backbone (16-d), with test-sized heads."""
    return _build


@pytest.fixture
def loss_drop() -> Callable[..., tuple[float, float]]:
    """Train a method `steps` Adam steps on one fixed batch; (mean of the first 3, of the last 3 losses).

    The generator is reseeded before every step, so each step draws the same views, labels and negatives: the
    objective is one fixed function of the weights, and a falling loss shows its gradient is right.
    """

    def run(method: SSLMethod, x: torch.Tensor, steps: int = 12, lr: float = 3e-3) -> tuple[float, float]:
        opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
        losses = []
        for step in range(steps):
            torch.manual_seed(0)
            loss = method(x, progress=step / steps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses[:3])), float(np.mean(losses[-3:]))

    return run
