"""Contrastive predictive coding (van den Oord et al. 2018, Hénaff et al. 2019; Taleb et al. 2020), 2D and 3D.

Each image is cut into a grid of patches: 5x5 half-overlapping patches in 2D, 4x4x4 non-overlapping in 3D.
"Rows" run along the first spatial axis, "columns" are the positions across the others. Every patch is encoded
(backbone -> Linear(code)); a GRU reads each column's top rows (rows 0 .. pps//2-1) into a context; one
linear predictor per future row predicts that row's code (2D skips the row right below the context, 3D does
not). Score = sigmoid(mean over terms and dims of prediction · code), for the true codes (positive) and for
the codes of a random other column or image (negative); binary cross-entropy.

Differences from the reference: the patches are cut with a random shift of at most `jitter` voxels instead of the
reference's crop-to-11/12-and-pad (2D) or crop-to-7/8 + flip (3D).
"""

from __future__ import annotations

import torch
from torch import nn

from medtransfer.pretrain._patches import encode_patches, patch_grid
from medtransfer.pretrain.base import METHODS, MethodEntry, PretrainConfig, SSLMethod, option


def cpc_rows(pps: int, dims: int) -> tuple[list[int], list[int]]:
    """(context rows, predicted rows): 2D pps 5 -> ([0, 1], [3, 4]); 3D pps 4 -> ([0, 1], [2, 3])."""
    context = list(range(pps // 2))
    first = len(context) + (1 if dims == 2 else 0)
    return context, list(range(first, pps))


def cpc_negatives(codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each (image, column), the codes of a random other (image, column): same rows, never itself.

    Args:
        codes: (B, R, K, E): B images, R rows, K columns, E code dims.

    Returns:
        (B, R, K, E) negatives.
    """
    b, _, k, _ = codes.shape
    n = b * k
    flat = codes.permute(0, 2, 1, 3).reshape(n, *codes.shape[1:2], codes.shape[-1])  # (B*K, R, E)
    shift = torch.randint(1, n, (n,), generator=generator).to(codes.device)
    src = (torch.arange(n, device=codes.device) + shift) % n  # any other (image, column), never the same one
    return flat[src].view(b, k, *flat.shape[1:]).permute(0, 2, 1, 3)


def cpc_logit(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over terms and code dims of pred · target: (B, T, K, E) x2 -> (B, K); the score is its sigmoid."""
    return (pred * target).mean(dim=(1, 3))


def cpc_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sigmoid(mean over terms and code dims of pred · target): (B, T, K, E) x2 -> (B, K) in (0, 1)."""
    return torch.sigmoid(cpc_logit(pred, target))


class CPC(SSLMethod):
    """Options: ``pps`` (5 in 2D, 4 in 3D), ``code_size`` (1024), ``context_size`` (256), ``jitter`` (0)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: PretrainConfig, *, mean: tuple[float, ...],
                 std: tuple[float, ...], dims: int = 2) -> None:
        super().__init__(backbone, mean=mean, std=std)
        self.dims = dims
        self.pps = option(cfg, "pps", 5 if dims == 2 else 4, int)
        self.jitter = option(cfg, "jitter", 0, int)
        code, ctx = option(cfg, "code_size", 1024, int), option(cfg, "context_size", 256, int)
        self.context_rows, self.target_rows = cpc_rows(self.pps, dims)
        self.code = nn.Linear(feature_dim, code)
        self.gru = nn.GRU(code, ctx, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(ctx, code) for _ in self.target_rows)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1] - self.jitter
        if self.dims == 2:  # half-overlapping patches: stride = side/(pps+1), patch = 2*stride
            stride = side // (self.pps + 1)
            return patch_grid(x, self.pps, patch=2 * stride, stride=stride, jitter=self.jitter)
        stride = side // self.pps
        return patch_grid(x, self.pps, patch=stride, stride=stride, jitter=self.jitter)

    def forward(self, x: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        patches = self._grid(self.normalize(x))  # (B, P, C, ...)
        b, k = len(x), self.pps ** (self.dims - 1)
        codes = self.code(encode_patches(self.backbone, patches)).view(b, self.pps, k, -1)  # (B, R, K, E)
        seq = codes[:, self.context_rows].permute(0, 2, 1, 3).flatten(0, 1)  # (B*K, rows, E)
        context = self.gru(seq)[1][-1].view(b, k, -1)  # (B, K, ctx): the last hidden state per column
        pred = torch.stack([p(context) for p in self.predictors], 1)  # (B, T, K, E)
        pos = codes[:, self.target_rows]
        neg = cpc_negatives(codes)[:, self.target_rows]
        logits = torch.cat([cpc_logit(pred, pos), cpc_logit(pred, neg)]).float()  # (2B, K)
        labels = torch.cat([torch.ones(b, k), torch.zeros(b, k)]).to(logits)
        # BCE of sigmoid(logit), computed from the logit: stable, and allowed under autocast
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)


METHODS.add("cpc", MethodEntry(CPC, dims=(2, 3), description="contrastive predictive coding over a patch grid"))
