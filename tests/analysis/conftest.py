"""Tiny hand-made models with a ModelCard, for the analyses' hand-worked cases."""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.models.card import InputContract, ModelCard


class RegionSum(nn.Module):
    """Features = (sum of the pixels of one region, per channel, then a constant 1): only that region matters."""

    def __init__(self, region: tuple[slice, ...], dims: int = 2, channels: int = 1) -> None:
        super().__init__()
        self.region = region
        self.card = ModelCard(name="region-sum", arch="small-cnn", feature_dim=channels + 1, dims=dims,
                              input=InputContract(input_size=None, in_chans=channels, mean=(0.5,) * channels,
                                                  std=(0.5,) * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[(slice(None), slice(None), *self.region)]
        s = part.flatten(2).sum(-1)
        return torch.cat([s, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


def carded(module: nn.Module, feature_dim: int, *, dims: int = 2, channels: int = 1) -> nn.Module:
    module.card = ModelCard(name="test-net", arch="small-cnn", feature_dim=feature_dim, dims=dims,  # type: ignore[assignment]
                            input=InputContract(input_size=None, in_chans=channels, mean=(0.5,) * channels,
                                                std=(0.5,) * channels))
    return module
