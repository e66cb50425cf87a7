"""Label-efficiency curves from the results store: mean ± std over seeds of a metric at each label fraction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
        ci_low, ci_high: the mean over those seeds of the cells' 95% bootstrap bounds (the test-set uncertainty
            of one run); None when a seed's cell stored no interval.
    """

    fraction: float
    mean: float
    std: float
    seeds: tuple[int, ...]
    ci_low: float | None = None
    ci_high: float | None = None


def mean_interval(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float | None, float | None]:
    """The mean value of `rows` (a grid point's seeds) and the mean of their 95% bounds; the bounds are None when a
    row stored no interval (a missing interval is not averaged into a narrower one)."""
    mean = float(np.mean([float(r["value"]) for r in rows]))
    if any(r.get("ci_low") is None or r.get("ci_high") is None for r in rows):
        return mean, None, None
    return mean, float(np.mean([r["ci_low"] for r in rows])), float(np.mean([r["ci_high"] for r in rows]))


def label_efficiency(rows: Iterable[Mapping[str, Any]], *, metric: str, protocol: str = "finetune",
                     split: str = "test") -> dict[str, dict[str, list[CurvePoint]]]:
    """Curves per model and dataset from store rows (`ResultStore.results()`), fractions ascending.

    Examples:
        >>> rows = [{"model": "m", "dataset": "d", "protocol": "finetune", "metric": "auc", "split": "test",
        ...          "fraction": 0.1, "seed": s, "value": v} for s, v in [(0, 0.7), (1, 0.8)]]
        >>> label_efficiency(rows, metric="auc")["m"]["d"][0].mean
        0.75
    """
    values: dict[tuple[str, str, float], dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        if r["metric"] == metric and r["protocol"] == protocol and r["split"] == split:
            fraction = 1.0 if r["fraction"] is None else float(r["fraction"])
            values.setdefault((r["model"], r["dataset"], fraction), {})[int(r["seed"])] = r
    curves: dict[str, dict[str, list[CurvePoint]]] = {}
    for (model, dataset, fraction), by_seed in sorted(values.items()):
        seeds = sorted(by_seed)
        v = np.array([float(by_seed[s]["value"]) for s in seeds])
        std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        mean, low, high = mean_interval([by_seed[s] for s in seeds])
        point = CurvePoint(fraction, mean, std, tuple(seeds), low, high)
        curves.setdefault(model, {}).setdefault(dataset, []).append(point)
    return curves
