"""Relative patch location (Doersch et al. 2015; Taleb et al. 2020): where is this patch relative to the centre?

A 3x3 (2D) or 3x3x3 (3D) grid of jittered patches; the centre patch and one other go through the shared
backbone, and a head on their concatenated features classifies the other's position: 8 classes in 2D, 26 in 3D.
"""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.pretrain._patches import classifier, encode_patches, grid_positions, patch_grid
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option


def rpl_offsets(dims: int, pps: int = 3) -> list[tuple[int, ...]]:
    """Class -> offset of the other patch from the centre one, in cells ((row, col) or (slice, row, col))."""
    centre = (pps // 2,) * dims
    return [tuple(p - c for p, c in zip(pos, centre, strict=True))
            for pos in grid_positions(pps, dims) if pos != centre]


def rpl_pairs(patches: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (centre, other) patch pair of each sample; `labels` (B,) index the non-centre cells in order.

    Args:
        patches: (B, P, C, ...) from `patch_grid` (P odd: 9 or 27).
    """
    centre = patches.shape[1] // 2
    other = labels + (labels >= centre).long()  # skip the centre cell in the grid order
    ar = torch.arange(len(patches), device=patches.device)
    return patches[:, centre], patches[ar, other]


class RelativePatchLocation(SSLMethod):
    """Options: ``pps`` (3), ``jitter`` (size//pps//4, at least 1), ``hidden`` (head sizes)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        self.pps = option(cfg, "pps", 3, int)
        self.jitter = cfg.options.get("jitter")
        self.classes = self.pps**dims - 1
        self.head = classifier(2 * feature_dim, self.classes, tuple(option(cfg, "hidden", [2048, 1024], list)))

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        cell = x.shape[-1] // self.pps
        jitter = int(self.jitter) if self.jitter is not None else max(1, cell // 4)
        patches = patch_grid(self.normalize(x), self.pps, patch=cell - jitter, stride=cell, jitter=jitter)
        labels = torch.randint(0, self.classes, (len(x),), device=x.device)
        centre, other = rpl_pairs(patches, labels)
        feats = encode_patches(self.backbone, torch.stack([centre, other], 1))  # (B, 2, D)
        return nn.functional.cross_entropy(self.head(feats.flatten(1)), labels)


METHODS.add("rpl", MethodEntry(RelativePatchLocation, dims=(2, 3),
                               description="relative patch location (8 / 26 classes)"))
