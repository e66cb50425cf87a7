"""Paired comparisons: Holm by hand, the paired bootstrap against a plain loop, the seed tests against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medtransfer.errors import ConfigError
from medtransfer.protocols.metrics import bootstrap_indices, metric_value
from medtransfer.report.stats import (
    BOOTSTRAP,
    NO_TEST,
    T_TEST,
    compare,
    headline_metrics,
    holm,
    paired_bootstrap,
    paired_seeds,
)
from medtransfer.runner.store import Predictions


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])  # None: no test, not in the family
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    with pytest.raises(ConfigError, match="p-values in"):
        holm([1.5])


def _scores(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    logits = signal * (2 * y - 1) + rng.normal(size=len(y))
    return 1 / (1 + np.exp(-logits))


def test_paired_bootstrap_equals_a_plain_loop_over_the_same_resamples() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    a = [_scores(rng, y, 1.5), _scores(rng, y, 1.5)]
    b = [_scores(rng, y, 0.5), _scores(rng, y, 0.5)]
    diff, low, high, p = paired_bootstrap("auc", "binary", y, a, b, n_boot=300, seed=7)
    idx = bootstrap_indices(len(y), n_boot=300, seed=7)
    d = np.array([np.mean([metric_value("auc", "binary", y[i], sa[i]) - metric_value("auc", "binary", y[i], sb[i])
                           for sa, sb in zip(a, b, strict=True)]) for i in idx])
    assert diff == pytest.approx(np.mean([metric_value("auc", "binary", y, sa) - metric_value("auc", "binary", y, sb)
                                          for sa, sb in zip(a, b, strict=True)]))
    assert (low, high) == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    assert p == pytest.approx(min(1, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / 301))
    assert low > 0 and p < 0.01  # a clearly better model


def test_paired_bootstrap_of_a_model_against_itself() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    s = rng.dirichlet(np.ones(3), 60)
    assert paired_bootstrap("accuracy", "multi-class", y, [s], [s], n_boot=100) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="one score array per shared seed"):
        paired_bootstrap("accuracy", "multi-class", y, [s], [], n_boot=100)


def test_paired_seeds_match_scipy() -> None:
    a, b = [0.81, 0.79, 0.84, 0.80], [0.78, 0.77, 0.80, 0.79]
    diff, low, high, p_t, p_w = paired_seeds(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert diff == pytest.approx(d.mean()) and (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert p_t == pytest.approx(stats.ttest_rel(a, b).pvalue) and p_w == pytest.approx(stats.wilcoxon(d).pvalue)
    assert paired_seeds([0.8], [0.7])[1:] == (None, None, None, None)  # one seed: no test
    assert paired_seeds([0.8, 0.7], [0.8, 0.7])[3] == 1.0  # identical: nothing to see


def _row(cell: str, model: str, seed: int, value: float, metric: str = "auc", **kw: object) -> dict:
    return {"cell_id": cell, "model": model, "dataset": "d", "protocol": "linear", "fraction": None, "seed": seed,
            "metric": metric, "split": "test", "value": value, "ci_low": None, "ci_high": None} | kw


def test_compare_picks_the_test_each_pair_of_cells_allows() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    preds = {f"{m}{s}": Predictions("binary", y, _scores(rng, y, 2.0 if m == "a" else 0.2)) for m in "ab"
             for s in (0, 1)}
    rows = [_row(c, c[0], int(c[1]), metric_value("auc", "binary", y, p.y_score)) for c, p in preds.items()]
    rows += [_row(c, c[0], int(c[1]), 0.5, metric="accuracy") for c in preds]  # not the headline metric
    rows += [_row("c0", "c", 0, 0.6), _row("c1", "c", 1, 0.62)]  # model c: no predictions
    assert headline_metrics([_row("s", "a", 0, 0.1, metric="pointing", protocol="saliency"), *rows]) == {"d": "auc"}
    found = {(c.model_a, c.model_b): c for c in compare(rows, preds.get, n_boot=200)}
    assert found["a", "b"].test == BOOTSTRAP and found["a", "b"].n == 50 and found["a", "b"].seeds == (0, 1)
    assert found["a", "b"].p is not None and found["a", "b"].p < 0.05 and found["a", "b"].diff > 0
    assert found["a", "c"].test == T_TEST and found["a", "c"].n == 2  # c has no predictions: over seeds
    ps = [found[k].p for k in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [found[k].p_adjusted for k in (("a", "b"), ("a", "c"), ("b", "c"))] == pytest.approx(holm(ps))
    one_seed = compare([r for r in rows if r["seed"] == 0], None)
    assert {c.test for c in one_seed} == {NO_TEST} and all(c.p is None for c in one_seed)


def test_predictions_on_different_test_images_are_not_paired() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    preds = {"a0": Predictions("binary", y, np.linspace(0.1, 0.9, 6)),
             "b0": Predictions("binary", y[::-1], np.linspace(0.1, 0.9, 6))}  # another order: other images
    rows = [_row("a0", "a", 0, 0.7), _row("b0", "b", 0, 0.6)]
    (c,) = compare(rows, preds.get, n_boot=50)
    assert c.test == NO_TEST  # one seed, and no shared test images: no test rather than a wrong one


def test_the_latest_row_of_a_grid_point_counts_and_the_pair_order_is_by_name() -> None:
    from medtransfer.report.stats import CONSTANT, latest_rows

    old = _row("old", "b", 0, 0.1)
    rows = [old, _row("b0", "b", 0, 0.70), _row("b1", "b", 1, 0.72), _row("a0", "a", 0, 0.60),
            _row("a1", "a", 1, 0.62)]
    kept, dropped = latest_rows(rows)
    assert dropped == 1 and old not in kept  # the same grid point run again (other options, a newer version)
    (c,) = compare(rows, None)
    assert (c.model_a, c.model_b) == ("a", "b")  # by name, whatever order the cells finished in
    assert c.diff == pytest.approx(-0.10) and c.test == CONSTANT and c.p is None  # the same -0.1 on both seeds
