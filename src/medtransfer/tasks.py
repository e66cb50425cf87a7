"""The task types and metric names every layer shares (datasets declare them, protocols compute them)."""

from __future__ import annotations

from typing import Literal

TaskType = Literal["binary", "multi-class", "multi-label", "ordinal", "segmentation"]
CLASSIFICATION_TASKS: tuple[str, ...] = ("binary", "multi-class", "multi-label", "ordinal")
# segmentation: an integer mask per image; its label names are the mask values' classes (0 = background)
TASKS: tuple[str, ...] = (*CLASSIFICATION_TASKS, "segmentation")
METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc", "qw_kappa")
SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou")
