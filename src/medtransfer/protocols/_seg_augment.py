"""Batched augmentations of images *and* masks for segmentation training, seeded by (seed, step).

``hosseinzadeh2021``: Hosseinzadeh Taher et al.'s albumentations groups (PROTOCOLS.md §3), as tensor ops on the
whole batch: with p 0.3 brightness/contrast or gamma; with p 0.3 an elastic distortion (a smooth random
displacement field; albumentations' Elastic/Grid/Optical distortions are all smooth warps of this kind); with
p 0.25 a random sized crop of 156-224 of 224 (70-100% of the side) resized back. ``flip``: random flips of every
spatial axis (Taleb et al.'s 3D finetuning flips). The geometry moves the mask with the image (nearest for the
mask, bilinear for the image); the intensity changes touch the image only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medtransfer.errors import ConfigError
from medtransfer.protocols._augment import step_generator

SEG_AUGMENTATIONS = ("none", "flip", "hosseinzadeh2021")
_ELASTIC_ALPHA = 0.06  # displacement amplitude as a share of the image side
_ELASTIC_KNOTS = 4  # control points per side of the smooth displacement field


def _chance(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p  # (n,) bool


def _intensity(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """With p 0.3, brightness/contrast (half) or gamma (half), per image; x in [0, 1]."""
    n, dev = len(x), x.device
    shape = (n,) + (1,) * (x.dim() - 1)
    on, gamma = _chance(n, 0.3, g, dev), _chance(n, 0.5, g, dev)
    bright = (torch.rand(n, generator=g, device=dev) - 0.5) * 0.4  # +-0.2, albumentations' default limits
    contrast = 1 + (torch.rand(n, generator=g, device=dev) - 0.5) * 0.4
    power = 0.8 + torch.rand(n, generator=g, device=dev) * 0.4  # gamma 80-120, as albumentations' RandomGamma
    bc = (x * contrast.view(shape) + bright.view(shape)).clamp(0, 1)
    gm = x.clamp_min(0).pow(power.view(shape))
    out = torch.where(gamma.view(shape), gm, bc)
    return torch.where(on.view(shape), out, x)


def _warp(x: torch.Tensor, y: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    ys = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="reflection", align_corners=False)
    return xs, ys[:, 0].round().long()


def _identity_grid(x: torch.Tensor) -> torch.Tensor:
    n, dims = len(x), x.dim() - 2
    theta = torch.eye(dims, dims + 1, device=x.device).expand(n, dims, dims + 1)
    return F.affine_grid(theta, list(x.shape), align_corners=False)  # (n, *spatial, dims)


def _elastic_and_crop(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, dims, dev = len(x), x.dim() - 2, x.device
    grid = _identity_grid(x)
    # elastic (p 0.3): a coarse random field upsampled to the image, a smooth warp
    knots = torch.randn((n, dims) + (_ELASTIC_KNOTS,) * dims, generator=g, device=dev) * _ELASTIC_ALPHA * 2
    mode = "bicubic" if dims == 2 else "trilinear"
    field = F.interpolate(knots, size=x.shape[2:], mode=mode, align_corners=True).movedim(1, -1)
    grid = grid + field * _chance(n, 0.3, g, dev).view((n,) + (1,) * (dims + 1))
    # random sized crop (p 0.25): a centre-jittered square window of 70-100% of the side, resized back
    side = 0.7 + torch.rand(n, generator=g, device=dev) * 0.3
    shift = (torch.rand((n, dims), generator=g, device=dev) * 2 - 1) * (1 - side)[:, None]
    crop = _chance(n, 0.25, g, dev)
    scale = torch.where(crop, side, torch.ones_like(side)).view((n,) + (1,) * (dims + 1))
    offset = torch.where(crop[:, None], shift, torch.zeros_like(shift)).view((n,) + (1,) * dims + (dims,))
    return _warp(x, y, grid * scale + offset)


def _flip(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    for axis in range(2, x.dim()):
        flip = _chance(len(x), 0.5, g, x.device)
        x = torch.where(flip.view((-1,) + (1,) * (x.dim() - 1)), x.flip(axis), x)
        y = torch.where(flip.view((-1,) + (1,) * (y.dim() - 1)), y.flip(axis - 1), y)
    return x, y


def augment_pairs(x: torch.Tensor, y: torch.Tensor, name: str, *, seed: int, step: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images x (B, C, ...) in [0, 1] and masks y (B, ...) together; the same (seed, step) gives the
    same result (a resumed run sees the batches an uninterrupted one does)."""
    if name not in SEG_AUGMENTATIONS:
        raise ConfigError(f"The 'augment' parameter of segment must be one of {list(SEG_AUGMENTATIONS)}. "
                          f"Got {name!r} instead.")
    if name == "none":
        return x, y
    g = step_generator(seed, step, x.device)
    if name == "flip":
        return _flip(x, y, g)
    return _elastic_and_crop(_intensity(x, g), y, g)
