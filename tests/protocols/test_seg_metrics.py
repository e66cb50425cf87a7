"""Dice and IoU: hand-worked cases, MONAI as the reference, the field of view, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtransfer.errors import DataError
from medtransfer.protocols.metrics import bootstrap_indices
from medtransfer.protocols.seg_metrics import confusion_counts, scores, summarise


def test_hand_worked() -> None:
    # truth 1 1 0 0, prediction 1 0 1 0: TP 1, FP 1, FN 1 -> Dice 2/4 = 0.5, IoU 1/3
    counts = confusion_counts(np.array([[1, 0, 1, 0]]), np.array([[1, 1, 0, 0]]), 2)
    np.testing.assert_array_equal(counts, [[1, 1, 1]])
    dice, iou = scores(counts[None])
    assert dice[0, 0] == 0.5 and iou[0, 0] == pytest.approx(1 / 3)
    # a field of view excluding the last two pixels: TP 1, FN 1, no FP -> Dice 2/3
    inside = np.array([[True, True, False, False]])
    assert scores(confusion_counts(np.array([[1, 0, 1, 0]]), np.array([[1, 1, 0, 0]]), 2, inside)[None])[0][0, 0] \
        == pytest.approx(2 / 3)


def test_equals_monai(rng: np.random.Generator) -> None:
    from monai.metrics import DiceMetric, MeanIoU

    n, k = 8, 4
    truth, pred = rng.integers(0, k, (n, 9, 11)), rng.integers(0, k, (n, 9, 11))
    truth[0][truth[0] == 3] = 0  # class 3 absent from image 0: left out there (NaN), as ignore_empty does
    counts = np.stack([confusion_counts(p, t, k) for p, t in zip(pred, truth, strict=True)])

    def onehot(x: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(x), k).permute(0, 3, 1, 2)

    dice, iou = scores(counts)
    for metric, ours in ((DiceMetric(include_background=False, reduction="none", ignore_empty=True), dice),
                         (MeanIoU(include_background=False, reduction="none", ignore_empty=True), iou)):
        metric(onehot(pred), onehot(truth))
        np.testing.assert_allclose(ours, metric.aggregate().numpy(), rtol=1e-6, equal_nan=True)
    out = summarise(counts, ("bg", "a", "b", "c"), n_boot=0)
    assert out["dice"][0] == pytest.approx(np.mean(np.nanmean(dice, 0)))  # mean over classes of per-class means
    assert out["dice/c"][0] == pytest.approx(np.nanmean(dice[1:, 2]))


def test_bootstrap_equals_a_naive_loop(rng: np.random.Generator) -> None:
    counts = rng.integers(0, 20, (15, 2, 3))
    counts[3, 1, 0] = counts[3, 1, 2] = 0  # class b absent from image 3
    out = summarise(counts, ("bg", "a", "b"), n_boot=200, seed=4)
    dice = scores(counts)[0]
    naive = [np.mean([np.nanmean(dice[idx, c]) for c in range(2)]) for idx in bootstrap_indices(15, n_boot=200, seed=4)]
    lo, hi = np.percentile(naive, [2.5, 97.5])
    assert out["dice"][1:] == pytest.approx((lo, hi))


def test_no_foreground_anywhere_is_an_error() -> None:
    with pytest.raises(DataError, match="None of the 2 test masks holds a foreground class"):
        summarise(np.zeros((2, 1, 3), int), ("bg", "fg"))
    with pytest.raises(DataError, match="must have one shape"):
        confusion_counts(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
