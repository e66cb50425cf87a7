"""SimCLR (Chen et al. 2020) as in Freddy's SimCLR on MedMNIST (PROTOCOLS.md §2), from lightly's blocks.

Backbone -> projection Linear(D, D) -> ReLU -> Linear(D, 128) -> NT-Xent (τ = 0.07) over two views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from medtransfer.pretrain.augment import augment
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option


def two_views(x: torch.Tensor, sequence: str, normalize: Callable[[torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views (augmentation `sequence`) of images in [0, 1], then `normalize`d.

    Grey images are augmented as RGB (colour jitter is then a brightness/contrast change) and a one-channel
    backbone sees the views' channel mean.
    """
    rgb = x.expand(-1, 3, *x.shape[2:]) if x.shape[1] == 1 else x
    v0, v1 = augment(rgb, sequence), augment(rgb, sequence)
    if x.shape[1] == 1:
        v0, v1 = v0.mean(1, keepdim=True), v1.mean(1, keepdim=True)
    return normalize(v0), normalize(v1)


class SimCLR(SSLMethod):
    """Two augmented views, a projection head, and the NT-Xent loss.

    Options (``cfg.options``): ``hidden_dim`` (default: the feature dim, 512 for ResNet-18), ``out_dim`` (128).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        hidden = option(cfg, "hidden_dim", feature_dim, int)
        # batch_norm=False: the reference's head is Linear -> ReLU -> Linear, no BN
        self.head = SimCLRProjectionHead(feature_dim, hidden, option(cfg, "out_dim", 128, int), batch_norm=False)
        # gather_distributed: under DDP the negatives come from every device's batch (a no-op on one device)
        self.loss = NTXentLoss(temperature=cfg.temperature, gather_distributed=True)
        self.augmentation = cfg.augmentation

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent random views of each image, normalised for the backbone."""
        return two_views(x, self.augmentation, self.normalize)

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        v0, v1 = self.views(x)
        z = self.head(self.backbone(torch.cat([v0, v1])))  # (2B, out_dim): one pass, BN sees both views
        z0, z1 = z.chunk(2)
        return self.fp32_loss(z0, z1)


METHODS.add("simclr", MethodEntry(SimCLR, dims=(2,), description="SimCLR: NT-Xent over two augmented views"))
