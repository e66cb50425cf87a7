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


@pytest.mark.parametrize("n_out", [1, 3])
def test_weighted_dice_equals_monai_generalized_dice(n_out: int) -> None:
    from monai.losses import GeneralizedDiceLoss

    torch.manual_seed(0)
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[:, 2:12, 2:12] = 1
    if n_out == 3:
        y[0, 5:7, 5:7] = 2  # a small class, in one image only
    logits = torch.randn(2, n_out, 16, 16)
    if n_out == 1:  # one sigmoid logit: MONAI's single channel is the foreground
        ref = GeneralizedDiceLoss(sigmoid=True, batch=True)(logits, y[:, None].float())
    else:
        ref = GeneralizedDiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)(
            logits, y[:, None])
    assert segmentation_loss(logits, y, "weighted_dice") == pytest.approx(float(ref), rel=1e-4)
    # and it separates good from bad: all-background is as bad as it gets, a perfect prediction is 0
    perfect = (y[:, None].float() * 2 - 1) * 50 if n_out == 1 else F.one_hot(y, 3).movedim(-1, 1).float() * 100
    assert segmentation_loss(perfect, y, "weighted_dice") == pytest.approx(0.0, abs=1e-3)
    background = torch.full_like(logits, -50.0) if n_out == 1 else F.one_hot(torch.zeros_like(y), 3).movedim(
        -1, 1).float() * 100
    assert segmentation_loss(background, y, "weighted_dice") > 0.99
