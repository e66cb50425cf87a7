"""The task types and metric names every layer shares (datasets declare them, protocols compute them)."""

from __future__ import annotations

from typing import Literal

TaskType = Literal["binary", "multi-class", "multi-label", "ordinal"]
TASKS: tuple[str, ...] = ("binary", "multi-class", "multi-label", "ordinal")
METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc", "qw_kappa")
