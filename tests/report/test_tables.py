from __future__ import annotations

from rich.console import Console

from medtransfer.report import pivot, results_table


def _row(model: str, metric: str, value: float, lo: float | None = 0.5, hi: float | None = 0.9) -> dict:
    return {"model": model, "dataset": "d", "protocol": "linear", "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi}


def test_pivot_formats_percent_with_ci_and_kappa_raw() -> None:
    models, table = pivot([_row("a", "accuracy", 0.8123), _row("b", "accuracy", 0.7, None, None),
                           _row("a", "qw_kappa", 0.41234, 0.3, 0.5)])
    assert models == ["a", "b"]
    assert table[("d", "linear", "100%", "accuracy")] == {"a": "81.2 [50.0, 90.0]", "b": "70.0"}
    assert table[("d", "linear", "100%", "qw_kappa")] == {"a": "0.412 [0.300, 0.500]"}


def test_label_fractions_are_separate_lines() -> None:
    _, table = pivot([_row("a", "auc", 0.9) | {"fraction": 0.1}, _row("a", "auc", 0.95) | {"fraction": 1.0}])
    assert set(table) == {("d", "linear", "10%", "auc"), ("d", "linear", "100%", "auc")}


def test_seeds_side_by_side_and_missing_cells_dashed() -> None:
    rows = [_row("a", "auc", 0.9), _row("a", "auc", 0.8), _row("b", "accuracy", 0.7)]
    console = Console(record=True, width=200)
    console.print(results_table(rows))
    text = console.export_text()
    assert "90.0 [50.0, 90.0] / 80.0 [50.0, 90.0]" in text
    assert "-" in text.split("auc")[1].splitlines()[0]
