"""Result tables from store rows: one line per (dataset, protocol, metric), one column per model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table

CONSTANT_NOTE = ("* QW-kappa 0 with a zero-width interval: the predictor is constant (every test sample got the "
                 "same class), so kappa is 0 on every resample; it says nothing about agreement.")


def constant_kappa(metric: str, value: float, low: float | None, high: float | None) -> bool:
    """True for the QW-kappa of a constant predictor: exactly 0 on the test split and on every resample."""
    return metric == "qw_kappa" and value == 0 and low == 0 and high == 0


# Shown as they are (not in %): QW-kappa and the analyses' numbers (attentive diffusion is a percentage already;
# pointing, silhouette, whitened cosine, Mahalanobis distance, LPIPS and feature MSE have their own scales).
_AS_IS = ("qw_kappa", "attentive_diffusion", "pointing", "feature_mse")
_AS_IS_PREFIXES = ("invariance:", "mahalanobis:", "lpips_", "silhouette_")


def display_scale(metric: str) -> tuple[int, int]:
    """(scale, digits) a metric is shown with: accuracy, AUC and Dice in % with 1 digit, the rest as is with 3."""
    return (1, 3) if metric in _AS_IS or metric.startswith(_AS_IS_PREFIXES) else (100, 1)


def _fmt(row: Mapping[str, Any]) -> str:
    scale, digits = display_scale(row["metric"])
    value = f"{scale * row['value']:.{digits}f}"
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return value
    star = "*" if constant_kappa(row["metric"], row["value"], row["ci_low"], row["ci_high"]) else ""
    return f"{value} [{scale * row['ci_low']:.{digits}f}, {scale * row['ci_high']:.{digits}f}]{star}"


Key = tuple[str, str, str, str]
ANALYSIS_PROTOCOLS = ("saliency", "invariance", "inversion", "embedding")  # cells without a label budget


def _labels(row: Mapping[str, Any]) -> str:
    fraction = row.get("fraction")
    if fraction is None:
        return "-" if row.get("protocol") in ANALYSIS_PROTOCOLS else "100%"
    return f"{100 * fraction:g}%"


def pivot(rows: Iterable[Mapping[str, Any]]) -> tuple[list[str], dict[Key, dict[str, str]]]:
    """Group rows into (dataset, protocol, labels, metric) -> {model: "value [low, high]"}; models first-seen order.

    Several seeds of one cell are listed side by side, separated by " / ".
    """
    models: list[str] = []
    table: dict[Key, dict[str, str]] = {}
    for row in rows:
        if row["model"] not in models:
            models.append(row["model"])
        cell = table.setdefault((row["dataset"], row["protocol"], _labels(row), row["metric"]), {})
        cell[row["model"]] = f"{cell[row['model']]} / {_fmt(row)}" if row["model"] in cell else _fmt(row)
    return models, table


def results_table(rows: Iterable[Mapping[str, Any]], *, title: str = "medtransfer results") -> Table:
    """A rich Table of test metrics with 95% CIs (accuracy and AUC in %, QW-kappa as is)."""
    rows = list(rows)
    models, grouped = pivot(rows)
    caption = "test split; value [95% CI]; accuracy/AUC/Dice in %; labels = share of train labels"
    if any(constant_kappa(r["metric"], r["value"], r.get("ci_low"), r.get("ci_high")) for r in rows):
        caption += "\n" + CONSTANT_NOTE
    table = Table(title=title, caption=caption)
    for name in ("dataset", "protocol", "labels", "metric", *models):
        table.add_column(name, no_wrap=name in ("dataset", "protocol", "labels", "metric"))
    def order(kv: tuple[Key, dict[str, str]]) -> tuple[str, str, float, str]:
        dataset, protocol, labels, metric = kv[0]
        return dataset, protocol, -float(labels[:-1] or 0), metric  # labels "-" (analyses) sort as 0

    for key, by_model in sorted(grouped.items(), key=order):
        table.add_row(*key, *(by_model.get(m, "-") for m in models))
    return table
