"""Rotation prediction (Gidaris et al. 2018; Taleb et al. 2020): 4 classes in 2D, 10 in 3D."""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.pretrain._patches import classifier
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option

# (quarter turns, plane) per class. 2D: k·90° in the (H, W) plane. 3D (B, C, D, H, W): the identity, then 90°,
# 180° and 270° about the z axis (the (H, W) plane), the x axis (the (D, H) plane) and the y axis (the (D, W)
# plane), as in Taleb et al.'s rotation task.
ROTATIONS_2D: tuple[tuple[int, tuple[int, int]], ...] = tuple((k, (-2, -1)) for k in range(4))
ROTATIONS_3D: tuple[tuple[int, tuple[int, int]], ...] = (
    (0, (-2, -1)),
    *((k, (-2, -1)) for k in (1, 2, 3)),
    *((k, (-3, -2)) for k in (1, 2, 3)),
    *((k, (-3, -1)) for k in (1, 2, 3)),
)


def rotations(dims: int) -> tuple[tuple[int, tuple[int, int]], ...]:
    """The rotation classes of 2D images or 3D volumes."""
    return ROTATIONS_2D if dims == 2 else ROTATIONS_3D


def rotate(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rotate each image/volume of `x` (B, C, ...) by its class in `labels` (B,)."""
    table = rotations(x.dim() - 2)
    out = torch.empty_like(x)
    for cls, (k, plane) in enumerate(table):
        sel = labels == cls
        if sel.any():
            out[sel] = torch.rot90(x[sel], k, plane)
    return out


class Rotation(SSLMethod):
    """Rotate each image by a random class; the backbone + head classify the rotation (cross-entropy).

    Options: ``hidden`` (head sizes, default [2048, 1024]).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        self.classes = len(rotations(dims))
        self.head = classifier(feature_dim, self.classes, tuple(option(cfg, "hidden", [2048, 1024], list)))

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        labels = torch.randint(0, len(rotations(x.dim() - 2)), (len(x),), device=x.device)
        logits = self.head(self.backbone(self.normalize(rotate(x, labels))))  # (B, classes)
        return nn.functional.cross_entropy(logits, labels)


METHODS.add("rotation", MethodEntry(Rotation, dims=(2, 3), description="rotation classification (4 / 10 classes)"))
