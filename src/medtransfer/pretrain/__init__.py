"""Self-supervised pretraining: SimCLR, BYOL, MoCo-v2, Barlow Twins and five pretext tasks (2D and 3D)."""

from __future__ import annotations

from medtransfer.pretrain import cpc, exemplar, jigsaw, joint, rotation, rpl, simclr  # noqa: F401  (register)
from medtransfer.pretrain.augment import AUGMENTATIONS, augment, flip_rotate_intensity
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod
from medtransfer.pretrain.train import PretrainResult, pretrain

__all__ = ["AUGMENTATIONS", "METHODS", "MethodEntry", "PretrainConfig", "PretrainResult", "SSLMethod", "augment",
           "flip_rotate_intensity", "pretrain"]
