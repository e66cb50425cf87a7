"""Metrics vs scikit-learn and medmnist.Evaluator, hand-worked cases, and the bootstrap vs a naive loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, roc_auc_score

from medtransfer.errors import ConfigError, DataError, UnknownNameError
from medtransfer.protocols import metrics as M
from medtransfer.protocols.metrics import bootstrap_ci, bootstrap_indices, evaluate, metric_value

TASKS = ("binary", "multi-class", "multi-label", "ordinal")
MEDMNIST_TASK = {"binary": "binary-class", "multi-class": "multi-class",
                 "multi-label": "multi-label, binary-class", "ordinal": "ordinal-regression"}


def _metrics_for(task: str) -> list[str]:
    return ["accuracy", "balanced_accuracy", "auc"] + ([] if task == "multi-label" else ["qw_kappa"])


def _data(task: str, n: int, rng: np.random.Generator, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Random labels with probabilities that carry some signal (so metrics are away from chance)."""
    if task == "multi-label":
        y = rng.integers(0, 2, (n, c))
        return y, np.clip(0.3 * y + 0.7 * rng.random((n, c)), 0, 1)
    k = 2 if task == "binary" else c
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.0 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # (N, K) softmax
    return y, p


def _sk_metric(name: str, task: str, y: np.ndarray, s: np.ndarray) -> float:
    """The reference: one scikit-learn call per label / class, medmnist's definitions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined resamples: sklearn warns and returns NaN (or raises)
        try:
            return _sk_metric_inner(name, task, y, s)
        except ValueError:
            return float("nan")


def _sk_metric_inner(name: str, task: str, y: np.ndarray, s: np.ndarray) -> float:
    if task == "multi-label":
        per = {"auc": lambda c: roc_auc_score(y[:, c], s[:, c]),
               "accuracy": lambda c: accuracy_score(y[:, c], s[:, c] > 0.5),
               "balanced_accuracy": lambda c: balanced_accuracy_score(y[:, c], s[:, c] > 0.5)}[name]
        return float(np.mean([per(c) for c in range(y.shape[1])]))
    pos = s[:, -1] if s.ndim == 2 else s
    pred = (pos > 0.5).astype(int) if task == "binary" else s.argmax(axis=1)
    if name == "auc":
        if task == "binary":
            return float(roc_auc_score(y, pos))
        return float(np.mean([roc_auc_score(y == c, s[:, c]) for c in range(s.shape[1])]))
    if name == "accuracy":
        return float(accuracy_score(y, pred))
    if name == "balanced_accuracy":
        return float(balanced_accuracy_score(y, pred))
    k = 2 if task == "binary" else s.shape[1]
    return float(cohen_kappa_score(y, pred, weights="quadratic", labels=np.arange(k)))


# ---------------------------------------------------------------- point values


@pytest.mark.parametrize("task", TASKS)
def test_every_metric_matches_sklearn(task: str, rng: np.random.Generator) -> None:
    y, s = _data(task, 300, rng)
    for name in _metrics_for(task):
        assert metric_value(name, task, y, s) == pytest.approx(_sk_metric(name, task, y, s), abs=1e-12), name


@pytest.mark.parametrize("task", TASKS)
def test_auc_and_accuracy_match_medmnist_evaluator(task: str, rng: np.random.Generator) -> None:
    evaluator = pytest.importorskip("medmnist.evaluator")
    y, s = _data(task, 300, rng)
    y_medmnist = y if task == "multi-label" else y[:, None]  # medmnist stores labels as (N, 1)
    flag = MEDMNIST_TASK[task]
    expected_auc, expected_acc = evaluator.getAUC(y_medmnist, s, flag), evaluator.getACC(y_medmnist, s, flag)
    assert metric_value("auc", task, y_medmnist, s) == pytest.approx(expected_auc, abs=1e-12)
    assert metric_value("accuracy", task, y_medmnist, s) == pytest.approx(expected_acc, abs=1e-12)


def test_binary_accepts_positive_column_and_two_columns(rng: np.random.Generator) -> None:
    y, p = _data("binary", 100, rng)
    for name in _metrics_for("binary"):
        assert metric_value(name, "binary", y, p) == metric_value(name, "binary", y, p[:, 1])


def test_auc_four_points_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    # Positives score 0.35 and 0.8, negatives 0.1 and 0.4. Of the 2 x 2 (positive, negative) pairs the
    # positive wins (0.35, 0.1), (0.8, 0.1), (0.8, 0.4) and loses (0.35, 0.4): AUC = 3 / 4.
    # Rank form: ranks 1, 3, 2, 4; positives' rank sum 2 + 4 = 6; (6 - 2 * 3 / 2) / (2 * 2) = 0.75.
    assert metric_value("auc", "binary", y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # A tie counts one half: positives 0.4, 0.8 vs negatives 0.1, 0.4 -> (1 + 0.5 + 1 + 1) / 4 = 0.875.
    assert metric_value("auc", "binary", y, np.array([0.1, 0.4, 0.4, 0.8])) == 0.875


def test_rounding_ties_are_ties() -> None:
    # Scores equal in exact arithmetic but split by float64 rounding (a few ulp) must score as the exact tie.
    ulp = np.spacing(0.4)
    y = np.array([0, 0, 1, 1])
    assert metric_value("auc", "binary", y, np.array([0.1, 0.4 + ulp, 0.4, 0.8])) == 0.875  # as the exact tie
    assert metric_value("auc", "binary", y, np.array([0.1, 0.4 - 3 * ulp, 0.4, 0.8])) == 0.875
    # p = 0.5 + ulp is 0.5 (negative); a distinct float32 step above 0.5 is not a tie.
    p = np.array([0.5 + np.spacing(0.5), 0.5 - np.spacing(0.5), 0.5, np.float32(0.5) + np.spacing(np.float32(0.5))])
    assert metric_value("accuracy", "binary", np.array([0, 0, 0, 1]), p) == 1.0
    # Two classes tied up to rounding: the first wins, whichever the rounding favoured.
    third = np.array([[1 / 3, 1 / 3 + 1e-16, 1 / 3 - 1e-16], [0.2, 0.4 - 2e-16, 0.4]])
    assert metric_value("accuracy", "multi-class", np.array([0, 1]), third) == 1.0
    # Real differences are kept: a float32 ulp of a probability is far above the tie tolerance.
    assert metric_value("auc", "binary", y, np.array([0.1, np.float32(0.4), np.nextafter(np.float32(0.4), 1,
                                                                               dtype=np.float32), 0.8])) == 1.0


def test_auc_uses_probabilities_not_hard_labels() -> None:
    # A perfectly ranked but badly calibrated model: every probability is below 0.5.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.45])
    assert metric_value("auc", "binary", y, p) == 1.0  # every positive outranks every negative
    # The reference bug: AUC of the argmax labels (all 0) sees no ranking at all.
    assert roc_auc_score(y, (p > 0.5).astype(int)) == 0.5
    assert metric_value("auc", "binary", y, (p > 0.5).astype(float)) == 0.5


def test_qw_kappa_fixed_labels_keep_ordinal_distances() -> None:
    # Grades 0 and 2 only; predicting 2 for a 0 is two steps off, not one (sklearn's default labels would
    # compress the scale to the classes present).
    y = np.array([0, 0, 2, 2])
    s = np.eye(3)[[0, 2, 2, 0]]
    assert metric_value("qw_kappa", "ordinal", y, s) == pytest.approx(
        cohen_kappa_score(y, s.argmax(1), weights="quadratic", labels=[0, 1, 2]))


# ---------------------------------------------------------------- bootstrap


def _naive_ci(name: str, task: str, y: np.ndarray, s: np.ndarray, n_boot: int,
              seed: int) -> tuple[float, float]:
    idx = bootstrap_indices(len(y), n_boot=n_boot, seed=seed)
    values = np.array([_sk_metric(name, task, y[i], s[i]) for i in idx])
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


@pytest.mark.parametrize("task", TASKS)
def test_vectorised_bootstrap_equals_naive_loop(task: str, rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 1000)  # many chunks, so their concatenation is tested too
    # 25 samples: some resamples miss a class, and their AUC must be left out exactly as the loop leaves them.
    y, s = _data(task, 25, rng)
    for name in _metrics_for(task):
        got = bootstrap_ci(name, task, y, s, n_boot=100, seed=3)
        np.testing.assert_allclose(got, _naive_ci(name, task, y, s, 100, 3), rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("task", TASKS)
def test_bootstrap_equals_naive_loop_when_a_class_is_rare(task: str, rng: np.random.Generator) -> None:
    y, s = _data(task, 20, rng)
    if task == "multi-label":
        y[:, 0] = 0
        y[:2, 0] = 1  # label 0 has 2 positives in 20
    else:
        y[y == 1] = 0
        y[:2] = 1  # class 1 has 2 samples in 20: (18/20)^20 ~ 12% of resamples miss it
    idx = bootstrap_indices(20, n_boot=100, seed=0)
    undefined = np.isnan([_sk_metric("auc", task, y[i], s[i]) for i in idx])
    assert 0 < undefined.sum() < 100  # the case under test really occurs
    for name in _metrics_for(task):
        np.testing.assert_allclose(bootstrap_ci(name, task, y, s, n_boot=100, seed=0),
                                   _naive_ci(name, task, y, s, 100, 0), rtol=0, atol=1e-9, err_msg=name)


def test_counted_ranks_equal_scipy_rankdata(rng: np.random.Generator) -> None:
    rankdata = pytest.importorskip("scipy.stats").rankdata
    pos = rng.random(300) < 0.3
    score = np.round(rng.random(300), 2)  # many ties
    idx = bootstrap_indices(300, n_boot=50, seed=0)
    ranks, p = rankdata(score[idx], axis=1), pos[idx]  # (B, N) average ranks, the textbook way
    n_pos = p.sum(axis=1)
    expected = ((ranks * p).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * (300 - n_pos))
    np.testing.assert_array_equal(M._auc(pos, score, idx), expected)


def test_bootstrap_ignores_undefined_resamples() -> None:
    y = np.array([0] * 9 + [1])  # one positive: ~35% of resamples hold none
    s = np.linspace(0.05, 0.95, 10)
    lo, hi = bootstrap_ci("auc", "binary", y, s, n_boot=300, seed=0)
    assert lo == 1.0 and hi == 1.0  # the positive has the top score in every resample that holds it


@pytest.mark.parametrize("task", TASKS)
def test_interval_contains_value_and_narrows_with_more_samples(task: str, rng: np.random.Generator) -> None:
    widths = []
    for n in (80, 2000):
        y, s = _data(task, n, rng)
        out = evaluate(task, y, s, ["accuracy", "auc"], n_boot=200, seed=0)
        for value, lo, hi in out.values():
            assert lo <= value <= hi
        widths.append(out["auc"][2] - out["auc"][1])
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(n): 5x narrower expected


def test_bootstrap_is_seeded(rng: np.random.Generator) -> None:
    y, s = _data("multi-class", 100, rng)
    a = bootstrap_ci("auc", "multi-class", y, s, n_boot=100, seed=1)
    assert a == bootstrap_ci("auc", "multi-class", y, s, n_boot=100, seed=1)
    assert a != bootstrap_ci("auc", "multi-class", y, s, n_boot=100, seed=2)


def test_evaluate_returns_value_and_interval_in_order(rng: np.random.Generator) -> None:
    y, s = _data("binary", 50, rng)
    out = evaluate("binary", y, s, ["auc", "accuracy"], n_boot=0)
    assert list(out) == ["auc", "accuracy"]
    assert out["auc"][0] == metric_value("auc", "binary", y, s)
    assert all(np.isnan(v) for v in out["auc"][1:])  # no resamples, no interval


# ---------------------------------------------------------------- errors


def test_unknown_metric_suggests_close_name() -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown metric 'acuracy'\. Did you mean 'accuracy'"):
        metric_value("acuracy", "binary", np.array([0, 1]), np.array([0.2, 0.7]))


def test_unknown_task() -> None:
    with pytest.raises(ConfigError, match=r"'task' parameter must be one of .*Got 'multiclass'"):
        metric_value("auc", "multiclass", np.array([0, 1]), np.array([0.2, 0.7]))


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(DataError, match=r"y_true of shape \(3,\) and y_score of shape \(4, 2\)"):
        metric_value("auc", "binary", np.array([0, 1, 1]), np.full((4, 2), 0.5))
    with pytest.raises(DataError, match=r"y_true of shape \(4, 3\) and y_score of shape \(4, 2\)"):
        metric_value("auc", "multi-label", np.zeros((4, 3)), np.full((4, 2), 0.5))


def test_probabilities_for_wrong_number_of_classes() -> None:
    with pytest.raises(DataError, match=r"label 3, but y_score has scores for 3 classes.*wrong number of"):
        metric_value("accuracy", "multi-class", np.array([0, 1, 3]), np.full((3, 3), 1 / 3))
    with pytest.raises(DataError, match=r"binary task needs y_score of shape .* Got \(2, 3\)"):
        metric_value("auc", "binary", np.array([0, 1]), np.full((2, 3), 1 / 3))


def test_logits_are_refused() -> None:
    with pytest.raises(DataError, match="apply softmax"):
        metric_value("auc", "multi-class", np.array([0, 1]), np.array([[2.0, -1.0], [0.5, 3.0]]))


def test_undefined_auc_and_kappa_on_multilabel() -> None:
    with pytest.raises(DataError, match="'auc' is undefined .* no positive or no negative"):
        metric_value("auc", "binary", np.array([1, 1]), np.array([0.2, 0.7]))
    with pytest.raises(ConfigError, match="'qw_kappa' is defined for binary, multi-class and ordinal"):
        metric_value("qw_kappa", "multi-label", np.zeros((2, 2)), np.zeros((2, 2)))


def test_bad_bootstrap_parameters() -> None:
    y, s = np.array([0, 1]), np.array([0.2, 0.7])
    with pytest.raises(ConfigError, match=r"'n_boot' parameter must be an int in the range \[0, inf\)\. Got"):
        bootstrap_ci("auc", "binary", y, s, n_boot=-1)
    with pytest.raises(ConfigError, match=r"'level' parameter .* Got 95"):
        bootstrap_ci("auc", "binary", y, s, level=95)
