"""Decisions on floating-point scores that a rounding tie cannot flip.

Scores that are equal in exact arithmetic (integer-valued features, duplicated images, symmetric votes) come
out of floating-point arithmetic equal only up to its rounding, and which one is larger then depends on the
summation order: the chunk size, the BLAS thread count, the CPU's vector width. Every arg-max, top-k and
threshold that could meet such a tie goes through here. The deciding values are computed in float64, values
within `TIE` (relative to their scale) of each other are ties, and ties go to the smallest index, as numpy's
argmax and scikit-learn's brute-force neighbour search order them.

`TIE` = 2^-36 ~ 1.5e-11 sits far above float64's rounding error of a dot product of D <= 16384 float32-valued
terms (at most D * 2^-53 ~ 1.8e-12 of the scale) and far below any difference float32 features can carry
(2^-24 ~ 6e-8), so it merges exactly the values that rounding made unequal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the numpy helpers serve the report, which must not wait seconds for torch
    import torch

TIE = 2.0**-36


def first_max(scores: np.ndarray, scale: float | np.ndarray = 1.0) -> np.ndarray:
    """Index of the largest score along the last axis; scores within TIE * scale of it count as equal, and
    the first of them wins.

    Args:
        scores: (..., C) scores, e.g. class probabilities (float64 for the tolerance to mean anything).
        scale: the magnitude the scores' rounding error is relative to (1 for probabilities), broadcastable to
            ``scores.shape[:-1] + (1,)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=-1, keepdims=True)
    return np.argmax(scores >= top - TIE * np.asarray(scale), axis=-1)


def first_min_torch(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`first_max` of ``-values`` along the last axis, in torch: the first index within TIE * scale of the min.

    Args:
        values: (..., C) float64 values, e.g. squared distances to C prototypes.
        scale: (..., 1) magnitude of their rounding error (e.g. |q|^2 + |p|^2 for an expanded distance).
    """
    import torch

    near = values <= values.min(dim=-1, keepdim=True).values + TIE * scale  # (..., C)
    return near.to(torch.uint8).argmax(dim=-1)  # torch.argmax returns the first maximal index


def above_half(p: np.ndarray) -> np.ndarray:
    """``p > 0.5`` where a probability within TIE of 0.5 is a tie and goes to the negative class (label 0),
    as `first_max` sends a tie of two classes to the smaller label."""
    return np.asarray(p, dtype=np.float64) > 0.5 + TIE


def tie_groups(values: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Group ids (..., M) of values (..., M) sorted along the last axis (either direction): a new group starts
    where the step from the previous value exceeds TIE * scale, so values only rounding apart share a group.

    Args:
        values: sorted float64 values.
        scale: (..., 1) magnitude of their rounding error, or a number.
    """
    import torch

    step = (values[..., 1:] - values[..., :-1]).abs()  # (..., M - 1)
    new = torch.cat([torch.zeros_like(values[..., :1], dtype=torch.bool), step > TIE * scale], dim=-1)
    return new.cumsum(dim=-1)  # (..., M)


def group_heads(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each value (..., M) replaced by the first value of its tie group, so tied values become equal."""
    import torch

    m = values.shape[-1]
    pos = torch.arange(m, device=values.device).expand_as(groups)
    start = torch.ones_like(groups, dtype=torch.bool)
    start[..., 1:] = groups[..., 1:] != groups[..., :-1]
    head = torch.where(start, pos, torch.zeros_like(pos)).cummax(dim=-1).values  # (..., M) its group's start
    return values.gather(-1, head)


def stable_topk(values: torch.Tensor, index: torch.Tensor, k: int, *, largest: bool = True,
                scale: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of candidate values (n, M) with their indices (n, M), ties broken by the smaller index.

    The candidates are sorted by value, grouped by `tie_groups`, and ordered by (group, index); every value
    is replaced by its group's head, so tied neighbours also get equal weights.

    Returns:
        ``(values, index)``, each (n, k), best first.
    """
    order = values.sort(dim=-1, descending=largest, stable=True).indices  # (n, M)
    v, i = values.gather(-1, order), index.gather(-1, order)
    groups = tie_groups(v, scale)  # (n, M), non-decreasing along M
    v = group_heads(v, groups)
    key = groups * (int(index.max()) + 1 if index.numel() else 1) + i  # (n, M) group first, then index
    pick = key.argsort(dim=-1)[..., :k]  # keys are distinct: any sort gives this order
    return v.gather(-1, pick), i.gather(-1, pick)
