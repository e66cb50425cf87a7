"""Jigsaw puzzles (Noroozi & Favaro 2016; Taleb et al. 2020): which of 100 permutations shuffled the patches?

The permutation set is chosen greedily for maximal Hamming distance (Noroozi's algorithm): all 9! orders are
candidates in 2D; in 3D (27! orders) a seeded pool of random candidates is used. The set is fixed by its seed, so
every run (and every saved model) uses the same 100 classes.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from torch import nn

from medtransfer.errors import ConfigError
from medtransfer.pretrain._patches import classifier, encode_patches, patch_grid
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option


@functools.lru_cache(maxsize=8)
def permutations(n_patches: int, count: int = 100, *, seed: int = 0, pool: int = 20000) -> np.ndarray:
    """`count` permutations of range(n_patches) with maximal minimal Hamming distance, (count, n_patches) int64.

    Greedy: start from one random candidate; repeatedly add the candidate whose smallest Hamming distance to
    those chosen is the largest (ties: the first).
    """
    rng = np.random.default_rng(seed)
    if n_patches <= 9:
        cands = np.array(list(itertools.permutations(range(n_patches))), dtype=np.int8)
    else:
        cands = np.stack([rng.permutation(n_patches) for _ in range(pool)]).astype(np.int8)
    if count > len(cands):
        raise ConfigError(f"Cannot choose {count} distinct permutations of {n_patches} patches from {len(cands)}.")
    chosen = [int(rng.integers(len(cands)))]
    min_dist = (cands != cands[chosen[0]]).sum(1)
    for _ in range(count - 1):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, (cands != cands[nxt]).sum(1))
    return cands[chosen].astype(np.int64)


def permutation_index(perm: np.ndarray | list[int], table: np.ndarray) -> int:
    """The class of permutation `perm` in `table`; raises when it is not one of them."""
    hits = np.flatnonzero((table == np.asarray(perm)).all(1))
    if not len(hits):
        raise ConfigError(f"Permutation {list(perm)} is not in the jigsaw permutation set.")
    return int(hits[0])


def shuffle_patches(patches: torch.Tensor, labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Reorder each sample's patches (B, P, ...) by its permutation: out[b, i] = patches[b, table[labels[b], i]]."""
    order = table[labels]  # (B, P)
    ar = torch.arange(len(patches), device=patches.device)[:, None]
    return patches[ar, order]


class Jigsaw(SSLMethod):
    """Options: ``pps`` (3), ``jitter`` (size//pps//4, at least 1), ``permutations`` (100), ``hidden``."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        self.pps = option(cfg, "pps", 3, int)
        self.jitter = cfg.options.get("jitter")
        table = permutations(self.pps**dims, option(cfg, "permutations", 100, int))
        self.register_buffer("table", torch.from_numpy(table), persistent=False)
        self.head = classifier(self.pps**dims * feature_dim, len(table),
                               tuple(option(cfg, "hidden", [2048, 1024], list)))

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        cell = x.shape[-1] // self.pps
        jitter = int(self.jitter) if self.jitter is not None else max(1, cell // 4)
        patches = patch_grid(self.normalize(x), self.pps, patch=cell - jitter, stride=cell, jitter=jitter)
        labels = torch.randint(0, len(self.table), (len(x),), device=x.device)
        feats = encode_patches(self.backbone, shuffle_patches(patches, labels, self.table))  # (B, P, D)
        return nn.functional.cross_entropy(self.head(feats.flatten(1)), labels)


METHODS.add("jigsaw", MethodEntry(Jigsaw, dims=(2, 3), description="jigsaw: 100 max-Hamming permutations"))
