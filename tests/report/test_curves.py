"""Label-efficiency curves: mean and standard deviation over seeds per fraction, from store rows."""

from __future__ import annotations

import pytest

from medtransfer.report.curves import label_efficiency


def _row(model: str, fraction: float | None, seed: int, value: float, metric: str = "auc",
         protocol: str = "finetune") -> dict:
    return {"model": model, "dataset": "d", "protocol": protocol, "metric": metric, "split": "test",
            "fraction": fraction, "seed": seed, "value": value}


def test_mean_and_std_over_seeds_per_fraction() -> None:
    rows = [_row("a", 0.1, 0, 0.6), _row("a", 0.1, 1, 0.8), _row("a", 0.1, 2, 0.7), _row("a", None, 0, 0.9),
            _row("a", 0.1, 0, 0.1, metric="accuracy"), _row("a", 0.1, 3, 0.0, protocol="linear"),
            _row("b", 0.1, 0, 0.5)]
    curves = label_efficiency(rows, metric="auc")
    low, full = curves["a"]["d"]
    # 0.6, 0.8, 0.7 -> mean 0.7, sample std sqrt((0.01 + 0.01 + 0) / 2) = 0.1
    assert (low.fraction, low.seeds) == (0.1, (0, 1, 2))
    assert low.mean == pytest.approx(0.7) and low.std == pytest.approx(0.1)
    assert (full.fraction, full.mean, full.std) == (1.0, 0.9, 0.0)  # no fraction = all labels; one seed: std 0
    assert [p.mean for p in curves["b"]["d"]] == [0.5]


def test_the_band_is_the_mean_of_the_seeds_intervals() -> None:
    rows = [_row("a", 0.1, 0, 0.6) | {"ci_low": 0.5, "ci_high": 0.7},
            _row("a", 0.1, 1, 0.8) | {"ci_low": 0.7, "ci_high": 0.9},
            _row("b", 0.1, 0, 0.8) | {"ci_low": 0.7, "ci_high": 0.9}, _row("b", 0.1, 1, 0.8)]
    curves = label_efficiency(rows, metric="auc")
    (a,) = curves["a"]["d"]
    assert a.ci_low == pytest.approx(0.6) and a.ci_high == pytest.approx(0.8)
    (b,) = curves["b"]["d"]
    assert (b.ci_low, b.ci_high) == (None, None)  # one seed without an interval: no band, not a narrower one
