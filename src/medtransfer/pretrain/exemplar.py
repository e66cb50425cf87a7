"""Exemplar networks with a triplet loss (Dosovitskiy et al. 2014; Taleb et al. 2020), 2D and 3D.

Triplet: anchor = an augmented view of x, positive = x itself, negative = another image of the batch (a
derangement, so never x). Each branch: backbone -> its own Linear(code) -> sigmoid. Loss:
mean(max(0, mean‖a − p‖² − mean‖a − n‖² + margin)), margin 1.
"""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.pretrain._patches import derangement
from medtransfer.pretrain.augment import flip_rotate_intensity
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option


def triplet_loss(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """mean over the batch of max(0, mean_d (a − p)² − mean_d (a − n)² + margin); a, p, n are (B, E)."""
    d_pos = (a - p).pow(2).mean(1)
    d_neg = (a - n).pow(2).mean(1)
    return torch.relu(d_pos - d_neg + margin).mean()


class Exemplar(SSLMethod):
    """Options: ``code_size`` (1024), ``margin`` (1.0)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        code = option(cfg, "code_size", 1024, int)
        self.margin = option(cfg, "margin", 1.0, float)
        # three separate heads, one per branch, as in the reference
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(feature_dim, code), nn.Sigmoid()) for _ in range(3))

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        neg = x[derangement(len(x)).to(x.device)]
        b = len(x)
        feats = self.backbone(self.normalize(torch.cat([flip_rotate_intensity(x), x, neg])))  # (3B, D)
        a, p, n = (head(f).float() for head, f in zip(self.heads, feats.split(b), strict=True))  # fp32 loss
        return triplet_loss(a, p, n, self.margin)


METHODS.add("exemplar", MethodEntry(Exemplar, dims=(2, 3), description="exemplar triplets (augmented, self, other)"))
