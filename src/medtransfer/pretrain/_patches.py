"""Shared pieces of the pretext tasks: patch grids (2D and 3D) with jitter, the classifier head, derangements."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from medtransfer.errors import ConfigError


def grid_positions(pps: int, dims: int) -> list[tuple[int, ...]]:
    """The grid cells in row-major order: (row, col) in 2D, (slice, row, col) in 3D."""
    return list(itertools.product(range(pps), repeat=dims))


def patch_grid(x: torch.Tensor, pps: int, *, patch: int, stride: int, jitter: int = 0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut each image into a pps^dims grid of cubic patches, each at a random offset in [0, jitter] of its cell.

    Args:
        x: images (B, C, H, W) or volumes (B, C, D, H, W) with equal sides.
        pps: patches per side.
        patch: patch side; stride: distance between cell origins (stride < patch gives overlapping patches).
        jitter: largest random shift inside the cell (Taleb et al.'s ``patch_jitter``); 0 cuts at the origins.

    Returns:
        (B, P, C, patch, patch[, patch]) with P = pps**dims in `grid_positions` order.
    """
    b, c, *sides = x.shape
    dims = len(sides)
    need = (pps - 1) * stride + patch + jitter
    if min(sides) < need:
        raise ConfigError(f"A {pps}-per-side grid of {patch}-px patches (stride {stride}, jitter {jitter}) needs "
                          f"images of at least {need} px; got {tuple(sides)}. Use fewer patches per side "
                          f"(options.pps) or less jitter (options.jitter).")
    p_count = pps**dims
    origins = torch.tensor(grid_positions(pps, dims), device=x.device) * stride  # (P, dims)
    offsets = torch.randint(0, jitter + 1, (b, p_count, dims), generator=generator).to(x.device)
    starts = origins + offsets  # (B, P, dims)
    ar = torch.arange(patch, device=x.device)
    xt = x.movedim(1, -1)  # (B, *S, C)
    index: list[torch.Tensor] = [torch.arange(b, device=x.device).view(b, 1, *([1] * dims))]
    for a in range(dims):
        shape = [b, p_count] + [1] * dims
        shape[2 + a] = patch
        index.append((starts[:, :, a, None] + ar).view(shape))  # broadcasts to (B, P, patch, ...)
    out = xt[tuple(index)]  # (B, P, patch, ..., C)
    return out.movedim(-1, 2).contiguous()  # (B, P, C, patch, ...)


def classifier(in_dim: int, classes: int, hidden: tuple[int, ...] = (2048, 1024)) -> nn.Sequential:
    """Taleb et al.'s ``big_fully`` head: (Linear -> BN -> ReLU -> Dropout 0.5) per hidden size -> Linear."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(0.5)]
        in_dim = h
    return nn.Sequential(*layers, nn.Linear(in_dim, classes))


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of range(n) with no fixed point (each item paired with another one), n >= 2."""
    if n < 2:
        raise ConfigError(f"Drawing negatives from the batch needs a batch of at least 2 images; got {n}.")
    shift = torch.randint(1, n, (1,), generator=generator)
    return (torch.arange(n) + shift) % n  # a cyclic shift by 1..n-1: never maps an item to itself


def encode_patches(backbone: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """(B, P, C, *patch) -> (B, P, D): every patch through the shared backbone in one batch."""
    b, p = patches.shape[:2]
    return backbone(patches.flatten(0, 1)).view(b, p, -1)
