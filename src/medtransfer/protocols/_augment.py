"""Batched training augmentations: one affine warp per image, all images of a batch in one grid_sample.

RandomResizedCrop, flips and zoom are all affine maps of the output grid onto the input image, so a whole batch
is augmented by `F.affine_grid` + `F.grid_sample` with one (2, 3) matrix per image — no per-image PIL calls.
Randomness comes from a generator seeded by (seed, step): the augmentation of step s is the same in an
uninterrupted run and in a run resumed from a checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medtransfer.errors import ConfigError

AUGMENTATIONS = ("none", "rrc_flip", "rrc_flip_rot7", "zoom_flip")
_RRC_SCALE = (0.08, 1.0)  # torchvision RandomResizedCrop defaults (Anton et al. keep them)
_RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_ZOOM = (0.85, 1.15)  # Taleb et al. 2020 finetuning: random zoom 0.85-1.15 and horizontal/vertical flips


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """A generator whose stream depends only on (seed, step)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return g


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _rrc_flip(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 2, 3) maps for a random resized crop (area share, log-uniform aspect) and a horizontal flip."""
    area = _uniform(n, *_RRC_SCALE, g, device)
    log_ratio = _uniform(n, math.log(_RRC_RATIO[0]), math.log(_RRC_RATIO[1]), g, device)
    ratio = log_ratio.exp()
    # crop width/height as shares of the image; torchvision retries crops that do not fit, we clamp them
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (_uniform(n, -1.0, 1.0, g, device)) * (1.0 - w)  # centre in [-1, 1] grid units, crop inside the image
    cy = (_uniform(n, -1.0, 1.0, g, device)) * (1.0 - h)
    flip = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta


def _rrc_flip_rot7(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """`_rrc_flip` and a rotation by U(-7, 7) degrees (Hosseinzadeh Taher et al.: RandomResizedCrop + flip +
    RandomRotation(7))."""
    theta = _rrc_flip(n, g, device)
    angle = _uniform(n, -7.0, 7.0, g, device) * (math.pi / 180.0)
    cos, sin = angle.cos(), angle.sin()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    theta[:, :, :2] = theta[:, :, :2] @ rot  # rotate the output grid, then crop and flip
    return theta


def _zoom_flip(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 2, 3) maps for a centred zoom in [0.85, 1.15] and independent horizontal / vertical flips."""
    zoom = _uniform(n, *_ZOOM, g, device)
    hflip = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    vflip = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = hflip / zoom  # zoom > 1 magnifies: the output grid samples a smaller input window
    theta[:, 1, 1] = vflip / zoom
    return theta


def augment(x: torch.Tensor, kind: str, *, size: int, seed: int, step: int) -> torch.Tensor:
    """Augment a float batch (B, C, H, W) into (B, C, size, size) with one random affine map per image.

    Args:
        x: images in [0, 1] (before normalisation).
        kind: ``none`` (a plain resize when sizes differ), ``rrc_flip``, ``rrc_flip_rot7`` or ``zoom_flip``.
        size: output side length.
        seed, step: pick the random maps (same (seed, step), same maps).
    """
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"The 'augment' parameter must be one of {list(AUGMENTATIONS)}. Got {kind!r} instead.")
    if kind == "none":
        if all(s == size for s in x.shape[2:]):
            return x
        if x.dim() != 4:
            raise ConfigError(f"Volumes are trained at their stored size; got {tuple(x.shape[2:])}, asked for {size}.")
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    if x.dim() != 4:
        raise ConfigError(f"The {kind!r} augmentation is 2D; got a batch of shape {tuple(x.shape)}. "
                          "Use augment='none' for volumes.")
    g = step_generator(seed, step, x.device)
    maps = {"rrc_flip": _rrc_flip, "rrc_flip_rot7": _rrc_flip_rot7, "zoom_flip": _zoom_flip}
    theta = maps[kind](x.shape[0], g, x.device)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
