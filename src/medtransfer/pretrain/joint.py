"""BYOL, MoCo-v2 and Barlow Twins from lightly's heads, losses and momentum utilities (2D, two views).

Each uses the same view augmentation as SimCLR (``cfg.augmentation``). Head sizes follow lightly's examples
for ResNet-18 (512-d features) and can be changed with ``cfg.options``.
"""

from __future__ import annotations

import copy

import torch
from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    MoCoProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option
from medtransfer.pretrain.simclr import two_views


class _Momentum(SSLMethod):
    """A backbone + projection with an exponential-moving-average copy of both (BYOL, MoCo)."""

    def _init_momentum(self, projection: nn.Module, cfg: PretrainConfig) -> None:
        self.projection = projection
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_momentum = copy.deepcopy(projection)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_momentum)
        self.m_start = option(cfg, "momentum", 0.99, float)
        self.augmentation = cfg.augmentation  # the same two-view augmentation as SimCLR

    def _step_momentum(self, progress: float) -> None:
        # momentum rises from m_start to 1 on a cosine over the run (BYOL paper; lightly's examples)
        m = cosine_schedule(int(progress * 1000), 1000, self.m_start, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection, self.projection_momentum, m)

    @torch.no_grad()
    def target(self, v: torch.Tensor) -> torch.Tensor:
        """Projections of the momentum (EMA) branch; no gradient."""
        return self.projection_momentum(self.backbone_momentum(v)).detach()


class BYOL(_Momentum):
    """BYOL (Grill et al. 2020): online predictor regresses the momentum branch's projection of the other view.

    Options: ``hidden_dim`` (1024), ``out_dim`` (256), ``momentum`` (0.99 at the start).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        hidden, out = option(cfg, "hidden_dim", 1024, int), option(cfg, "out_dim", 256, int)
        self._init_momentum(BYOLProjectionHead(feature_dim, hidden, out), cfg)
        self.prediction = BYOLPredictionHead(out, hidden, out)
        self.loss = NegativeCosineSimilarity()

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        self._step_momentum(progress)
        v0, v1 = two_views(x, self.augmentation, self.normalize)
        p = self.prediction(self.projection(self.backbone(torch.cat([v0, v1]))))  # (2B, out)
        p0, p1 = p.chunk(2)
        t0, t1 = self.target(v0), self.target(v1)
        return 0.5 * (self.fp32_loss(p0, t1) + self.fp32_loss(p1, t0))


class MoCoV2(_Momentum):
    """MoCo-v2 (Chen et al. 2020): query vs momentum keys plus a memory bank of past keys, NT-Xent.

    Options: ``hidden_dim`` (512), ``out_dim`` (128), ``memory_bank`` (4096 keys; 0: none), ``momentum`` (0.99).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        hidden, out = option(cfg, "hidden_dim", 512, int), option(cfg, "out_dim", 128, int)
        self._init_momentum(MoCoProjectionHead(feature_dim, hidden, out), cfg)
        bank = option(cfg, "memory_bank", 4096, int)
        # bank 0: negatives from the batch only
        self.loss = NTXentLoss(temperature=cfg.temperature, memory_bank_size=(bank, out) if bank > 0 else 0,
                               gather_distributed=True)

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        self._step_momentum(progress)
        v0, v1 = two_views(x, self.augmentation, self.normalize)
        q = self.projection(self.backbone(v0))  # (B, out)
        k = self.target(v1)
        return self.fp32_loss(q, k)


class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' projections -> identity.

    Options: ``hidden_dim`` (2048), ``out_dim`` (2048), ``lambda_param`` (5e-3).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        hidden, out = option(cfg, "hidden_dim", 2048, int), option(cfg, "out_dim", 2048, int)
        self.projection = BarlowTwinsProjectionHead(feature_dim, hidden, out)
        self.loss = BarlowTwinsLoss(lambda_param=option(cfg, "lambda_param", 5e-3, float), gather_distributed=True)
        self.augmentation = cfg.augmentation

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        v0, v1 = two_views(x, self.augmentation, self.normalize)
        z0, z1 = self.projection(self.backbone(torch.cat([v0, v1]))).chunk(2)
        return self.fp32_loss(z0, z1)


METHODS.add("byol", MethodEntry(BYOL, dims=(2,), description="BYOL: predictor vs momentum target"))
METHODS.add("mocov2", MethodEntry(MoCoV2, dims=(2,), description="MoCo-v2: momentum keys + memory bank"))
METHODS.add("barlowtwins", MethodEntry(BarlowTwins, dims=(2,), description="Barlow Twins: redundancy reduction"))
