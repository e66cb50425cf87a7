"""Label-efficiency curves from the results store: mean ± std over seeds of a metric at each label fraction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CurvePoint:
    """One label budget of one (model, dataset): the metric's mean and standard deviation over seeds.

    Attributes:
        fraction: share of training labels (1.0 = all).
        mean, std: over the seeds that finished (std with ddof=1; 0.0 for a single seed).
        seeds: the seeds the point averages.
    """

    fraction: float
    mean: float
    std: float
    seeds: tuple[int, ...]


def label_efficiency(rows: Iterable[Mapping[str, Any]], *, metric: str, protocol: str = "finetune",
                     split: str = "test") -> dict[str, dict[str, list[CurvePoint]]]:
    """Curves per model and dataset from store rows (`ResultStore.results()`), fractions ascending.

    Examples:
        >>> rows = [{"model": "m", "dataset": "d", "protocol": "finetune", "metric": "auc", "split": "test",
        ...          "fraction": 0.1, "seed": s, "value": v} for s, v in [(0, 0.7), (1, 0.8)]]
        >>> label_efficiency(rows, metric="auc")["m"]["d"][0].mean
        0.75
    """
    values: dict[tuple[str, str, float], dict[int, float]] = {}
    for r in rows:
        if r["metric"] == metric and r["protocol"] == protocol and r["split"] == split:
            fraction = 1.0 if r["fraction"] is None else float(r["fraction"])
            values.setdefault((r["model"], r["dataset"], fraction), {})[int(r["seed"])] = float(r["value"])
    curves: dict[str, dict[str, list[CurvePoint]]] = {}
    for (model, dataset, fraction), by_seed in sorted(values.items()):
        v = np.array([by_seed[s] for s in sorted(by_seed)])
        std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        point = CurvePoint(fraction, float(v.mean()), std, tuple(sorted(by_seed)))
        curves.setdefault(model, {}).setdefault(dataset, []).append(point)
    return curves
