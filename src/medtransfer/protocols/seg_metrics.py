"""Dice and IoU of predicted masks, per image and class, with bootstrap intervals over test images.

Definitions (MONAI's ``DiceMetric`` / ``MeanIoU`` with ``include_background=False``, ``ignore_empty=True``):
for image i and foreground class c, with TP/FP/FN counted inside the image's valid region (its field of view,
else everywhere), Dice = 2 TP / (2 TP + FP + FN) and IoU = TP / (TP + FP + FN); an image whose ground truth
lacks class c is left out of that class (NaN), so a correct empty prediction neither helps nor hurts. A
class's score is the mean over the images that have it, the headline the mean over classes. The interval
resamples test images with replacement (seeded), as the classification metrics do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medtransfer.errors import DataError
from medtransfer.protocols.metrics import bootstrap_indices


def confusion_counts(pred: np.ndarray, truth: np.ndarray, n_classes: int, valid: np.ndarray | None = None
                     ) -> np.ndarray:
    """TP, FP, FN of each foreground class of one image: (n_classes - 1, 3).

    Args:
        pred, truth: integer masks of one shape, values in [0, n_classes).
        valid: bool mask of the pixels that count (a field of view), or None for all.
    """
    if pred.shape != truth.shape or (valid is not None and valid.shape != truth.shape):
        raise DataError(f"Prediction, ground truth and valid region must have one shape; got {pred.shape}, "
                        f"{truth.shape} and {None if valid is None else valid.shape}.")
    if valid is not None:
        pred, truth = pred[valid], truth[valid]
    pair = np.bincount(truth.ravel().astype(np.int64) * n_classes + pred.ravel(), minlength=n_classes ** 2)
    conf = pair.reshape(n_classes, n_classes)  # rows: truth, columns: prediction
    tp = np.diag(conf)
    fp, fn = conf.sum(0) - tp, conf.sum(1) - tp
    return np.stack([tp, fp, fn], axis=1)[1:]


def scores(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU (N, K) from counts (N, K, 3); NaN where the ground truth lacks the class."""
    tp, fp, fn = counts[..., 0].astype(np.float64), counts[..., 1], counts[..., 2]
    present = (tp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
    return dice, iou


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over `axis` ignoring NaN; NaN (without a warning) where all are NaN."""
    count, total = (~np.isnan(x)).sum(axis=axis), np.nansum(x, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def summarise(counts: np.ndarray, class_names: Sequence[str], *, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """``{metric: (value, low, high)}`` for dice, iou and each foreground class's ``dice/<name>`` and
    ``iou/<name>``, from the per-image counts (N, K, 3) of the test images.

    Raises:
        DataError: no test image holds any foreground class (every score would be undefined).
    """
    dice, iou = scores(counts)  # (N, K)
    if np.isnan(dice).all():
        raise DataError(f"None of the {len(counts)} test masks holds a foreground class ({list(class_names[1:])}): "
                        "Dice and IoU are undefined. Evaluate on images that contain the structure.")
    boot = bootstrap_indices(len(counts), n_boot=n_boot, seed=seed) if n_boot else np.zeros((0, len(counts)), int)
    out: dict[str, tuple[float, float, float]] = {}
    for name, values in (("dice", dice), ("iou", iou)):
        point = _nanmean(values, 0)  # (K,) mean over the images that hold each class
        per_class = _nanmean(values[boot], 1)  # (B, K)
        out[name] = (float(_nanmean(point, 0)), *_interval(_nanmean(per_class, 1), level))
        for k, cls in enumerate(class_names[1:]):
            out[f"{name}/{cls}"] = (float(point[k]), *_interval(per_class[:, k], level))
    return out


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
