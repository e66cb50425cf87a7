"""Segmentation losses against their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medtransfer.protocols._seg_module import probabilities, segmentation_loss


def test_probabilities() -> None:
    p = probabilities(torch.zeros(2, 1, 3, 3))
    assert p.shape == (2, 2, 3, 3) and torch.allclose(p, torch.full_like(p, 0.5))
    assert torch.allclose(probabilities(torch.randn(2, 4, 3, 3)).sum(1), torch.ones(2, 3, 3))


def test_losses() -> None:
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[:, 2:6, 2:6] = 1
    perfect = (y[:, None].float() * 2 - 1) * 50  # sigmoid ~ the mask exactly
    assert segmentation_loss(perfect, y, "dice") == pytest.approx(0.0, abs=1e-4)
    assert segmentation_loss(-perfect, y, "dice") > 0.9
    logits = torch.randn(2, 1, 8, 8)
    assert segmentation_loss(logits, y, "bce") == pytest.approx(float(F.binary_cross_entropy_with_logits(
        logits[:, 0], y.float())))
    p = torch.sigmoid(logits[:, 0])  # soft Dice pooled over the batch, smoothing 1
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    assert segmentation_loss(logits, y, "dice") == pytest.approx(float(dice), rel=1e-5)
    assert segmentation_loss(logits, y, "dice_bce") == pytest.approx(float(dice) + float(
        F.binary_cross_entropy_with_logits(logits[:, 0], y.float())), rel=1e-5)
    multi, y3 = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    assert segmentation_loss(multi, y3, "bce") == pytest.approx(float(F.cross_entropy(multi, y3)))
    # generalised Dice: weights 1 / volume^2 make a small class count as much as a large one
    q, onehot = torch.softmax(multi, 1)[:, 1:], F.one_hot(y3, 3).movedim(-1, 1)[:, 1:].float()
    w = 1 / onehot.sum((0, 2, 3)).clamp_min(1) ** 2
    gd = 1 - (2 * (w * (q * onehot).sum((0, 2, 3))).sum() + 1) / ((w * (q + onehot).sum((0, 2, 3))).sum() + 1)
    assert segmentation_loss(multi, y3, "weighted_dice") == pytest.approx(float(gd), rel=1e-5)
