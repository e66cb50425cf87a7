from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medtransfer.errors import ConfigError, DataError, UnknownNameError
from medtransfer.protocols import Features, LinearConfig, linear_probe
from medtransfer.protocols.linear import ANTON2022_C_GRID, PRESETS, split_validation


def _blobs(rng: np.random.Generator, n: int, classes: int = 3, dim: int = 8) -> Features:
    centers = np.arange(classes)[:, None] * np.linspace(0.5, 1.0, dim)[None]  # (C, D) overlapping blobs
    y = rng.integers(0, classes, n)
    return Features(centers[y] + rng.normal(size=(n, dim)), y)


def test_matches_sklearn_with_the_chosen_c(rng: np.random.Generator) -> None:
    train, val, test = _blobs(rng, 200), _blobs(rng, 80), _blobs(rng, 150)
    r = linear_probe(train, test, val=val, task="multi-class", metrics=("accuracy", "auc"))
    scaler = StandardScaler().fit(train.x)
    with threadpool_limits(1):  # small BLAS-bound fits: threads only add synchronisation
        best = max(LinearConfig().C_grid, key=lambda C: accuracy_score(
            val.y, LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(train.x), train.y)
            .predict(scaler.transform(val.x))))
        ref = LogisticRegression(C=best, tol=1e-10, max_iter=10_000).fit(scaler.transform(train.x), train.y)
    proba = ref.predict_proba(scaler.transform(test.x))
    assert r.chosen["C"] == best
    assert r.metrics["accuracy"] == pytest.approx(accuracy_score(test.y, proba.argmax(1)), abs=1e-9)
    assert r.metrics["auc"] == pytest.approx(roc_auc_score(test.y, proba, multi_class="ovr"), abs=1e-6)
    lo, hi = r.ci["accuracy"]
    assert lo <= r.metrics["accuracy"] <= hi and hi - lo < 0.3
    assert len(r.grid) == len(LinearConfig().C_grid) and r.n_train == 200 and r.n_test == 150
    assert all(g["converged"] for g in r.grid) and r.config["preset"] == "default"


def test_without_val_split_holds_out_train_and_never_sees_test(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 200, classes=2), _blobs(rng, 100, classes=2)
    shuffled = Features(test.x, rng.permutation(test.y))  # test labels must not change the chosen C
    for preset in PRESETS:
        a = linear_probe(train, test, preset=preset, task="binary", metrics=("auc", "accuracy"))
        b = linear_probe(train, shuffled, preset=preset, task="binary", metrics=("auc", "accuracy"))
        assert a.chosen == b.chosen and a.grid == b.grid
        assert a.metrics["auc"] > 0.8 > b.metrics["auc"] - 0.2


def test_multi_label(rng: np.random.Generator) -> None:
    x = rng.normal(size=(200, 6))
    y = (x[:, :3] > 0).astype(np.uint8)  # label j is the sign of feature j
    r = linear_probe(Features(x[:150], y[:150]), Features(x[150:], y[150:]), task="multi-label",
                     metrics=("auc", "accuracy"))
    assert r.metrics["auc"] > 0.95


def test_ordinal_reports_qw_kappa(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 200, classes=4), _blobs(rng, 100, classes=4)
    r = linear_probe(train, test, task="ordinal", metrics=("accuracy", "auc", "qw_kappa"), n_boot=50)
    assert set(r.metrics) == {"accuracy", "auc", "qw_kappa"} and r.metrics["qw_kappa"] > 0.5


# ---------------------------------------------------------------- anton2022 against the reference loop


def _reference_loop(train: Features, test: Features) -> tuple[list[float], list[float], float, float]:
    """jonahanton/SSL_medicalimaging linear.py, as in PROTOCOLS.md §1.6, on modern scikit-learn.

    Returns:
        (the Cs in the order tried, their validation accuracies, the chosen C, the test accuracy).
    """
    binary = len(np.unique(train.y)) == 2  # multi_class='multinomial' on 2 classes = one logit at 2C
    factor = 2.0 if binary else 1.0
    state = np.random.get_state()
    indices = list(range(train.n))
    split = int(np.floor(0.2 * train.n))
    np.random.seed(0)
    np.random.shuffle(indices)
    np.random.set_state(state)
    fit_idx, val_idx = indices[split:], indices[:split]
    clf = LogisticRegression(warm_start=True)
    Cs: list[float] = []
    scores: list[float] = []
    best_score, best_C = 0.0, float("nan")
    for wd in torch.logspace(-6, 5, 45):  # wd ascending: C from 1e6 down to 1e-5
        C = 1.0 / wd.item()
        clf.set_params(C=factor * C)
        clf.fit(train.x[fit_idx], train.y[fit_idx])
        score = clf.score(train.x[val_idx], train.y[val_idx])
        Cs.append(C)
        scores.append(score)
        if score > best_score:
            best_score, best_C = score, C
    clf.set_params(C=factor * best_C)
    clf.fit(train.x, train.y)
    return Cs, scores, best_C, clf.score(test.x, test.y)


@pytest.mark.parametrize("classes", [2, 3])
def test_anton2022_reproduces_the_reference_loop(rng: np.random.Generator, classes: int) -> None:
    train, test = _blobs(rng, 300, classes=classes), _blobs(rng, 300, classes=classes)
    with threadpool_limits(1):
        Cs, scores, ref_C, ref_acc = _reference_loop(train, test)
    r = linear_probe(train, test, preset="anton2022", metrics=("accuracy",), n_boot=0)
    assert [g["C"] for g in r.grid] == Cs and len(Cs) == 45
    assert Cs[0] == pytest.approx(1e6, rel=1e-6) and Cs[-1] == pytest.approx(1e-5, rel=1e-6)
    ours, ref = Cs.index(r.chosen["C"]), Cs.index(ref_C)
    # same C, or a neighbour whose reference validation score ties the best within one sample
    assert abs(ours - ref) <= 1 and scores[ours] >= max(scores) - 1.0 / 60 - 1e-12
    assert abs(r.metrics["accuracy"] - ref_acc) <= 0.005


def test_anton2022_sklearn_solver_is_the_reference_loop(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 300), _blobs(rng, 300)
    with threadpool_limits(1):  # 45 small BLAS-bound fits: threads only add synchronisation
        _, scores, ref_C, ref_acc = _reference_loop(train, test)
        r = linear_probe(train, test, preset="anton2022", solver="sklearn", metrics=("accuracy",), n_boot=0)
    assert r.chosen["C"] == ref_C and [g["accuracy"] for g in r.grid] == scores
    assert r.metrics["accuracy"] == ref_acc


def test_anton2022_config_and_split(rng: np.random.Generator) -> None:
    train, val, test = _blobs(rng, 100), _blobs(rng, 40), _blobs(rng, 50)
    r = linear_probe(train, test, val=val, preset="anton2022", n_boot=0)
    assert r.config["preset"] == "anton2022" and r.config["standardize"] is False
    assert r.config["C_grid"] == list(ANTON2022_C_GRID)
    # the reference ignores a val split: 20 of the 100 train rows choose C, as np.random.seed(0) + shuffle
    fit_on, held = split_validation(train, 0.2, 0, legacy=True)
    order = np.arange(100)
    np.random.RandomState(0).shuffle(order)
    # rows in the shuffled order the reference indexes them with: the order changes the solver's float sums
    np.testing.assert_array_equal(held.x, train.x[order[:20]])
    np.testing.assert_array_equal(fit_on.x, train.x[order[20:]])


def test_overrides_change_the_preset(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 120), _blobs(rng, 60)
    r = linear_probe(train, test, preset="anton2022", C_grid=(1.0,), n_boot=0)
    assert r.chosen == {"C": 1.0} and len(r.grid) == 1 and r.config["standardize"] is False
    r = linear_probe(train, test, C_grid=[0.1, 1], n_boot=0)  # lists and ints are coerced, as from YAML
    assert [g["C"] for g in r.grid] == [0.1, 1.0]


def test_preset_and_config_errors(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 60), _blobs(rng, 30)
    with pytest.raises(UnknownNameError, match="Unknown linear-probe preset 'anton'. Did you mean 'anton2022'"):
        linear_probe(train, test, preset="anton")
    with pytest.raises(UnknownNameError, match="Unknown key 'C_gird'.*Did you mean 'C_grid'"):
        linear_probe(train, test, C_gird=(1.0,))
    with pytest.raises(ConfigError, match="either preset='anton2022' or cfg="):
        linear_probe(train, test, preset="anton2022", cfg=LinearConfig())
    with pytest.raises(ConfigError, match="'tol' parameter of LinearConfig must be a float in the range"):
        linear_probe(train, test, tol=0.0)


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="'C_grid' parameter of LinearConfig"):
        LinearConfig(C_grid=(0.0,))
    with pytest.raises(ConfigError, match="'val_fraction' parameter"):
        LinearConfig(val_fraction=1.5)
    with pytest.raises(ConfigError, match="'solver' parameter of LinearConfig must be one of"):
        LinearConfig(solver="liblinear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'max_iter' parameter of LinearConfig must be an int"):
        LinearConfig(max_iter=0)


def test_anton2022_selects_on_accuracy_whatever_metric_comes_first(rng: np.random.Generator) -> None:
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
    train, test = Features(x[:150], y[:150]), Features(x[150:], y[150:])
    r = linear_probe(train, test, preset="anton2022", task="binary", metrics=("auc", "accuracy"), n_boot=10)
    assert all("accuracy" in g for g in r.grid) and r.config["select"] == "accuracy"


def test_multi_label_with_a_label_missing_from_validation(rng: np.random.Generator) -> None:
    x = rng.normal(size=(300, 6))
    y = (x[:, :3] > 0).astype(np.uint8)
    y[:, 2] = 0
    y[:3, 2] = 1  # a rare label: its 3 positives are all in train, none in the validation split
    val = Features(rng.normal(size=(60, 6)), np.zeros((60, 3), np.uint8) | (rng.random((60, 3)) > 0.5) * [1, 1, 0])
    r = linear_probe(Features(x[:200], y[:200]), Features(x[200:], (x[200:, :3] > 0).astype(np.uint8)), val=val,
                     task="multi-label", metrics=("auc", "accuracy"), n_boot=10)
    assert set(r.metrics) == {"auc", "accuracy"} and all(np.isfinite(g["auc"]) for g in r.grid)


@pytest.mark.parametrize("solver", ["fast", "replay", "sklearn"])
def test_a_class_no_training_row_has_gets_probability_zero(rng: np.random.Generator, solver: str) -> None:
    def split(n: int, classes: list[int]) -> Features:
        y = rng.choice(classes, n)
        return Features(rng.normal(size=(n, 6)) + y[:, None], y)

    train, val, test = split(60, [0, 1]), split(30, [0, 1]), split(30, [0, 1, 2])  # a 1% budget can do this
    r = linear_probe(train, test, val=val, task="multi-class", solver=solver, n_boot=0, C_grid=(1.0,))
    two = linear_probe(train, Features(test.x[test.y < 2], test.y[test.y < 2]), val=val, task="multi-class",
                       solver=solver, n_boot=0, C_grid=(1.0,))
    # class 2 scored 0 everywhere: every class-2 image is an error, the others keep the 2-class prediction
    shown = test.y < 2
    assert r.metrics["accuracy"] == pytest.approx(two.metrics["accuracy"] * shown.mean())
    with pytest.raises(DataError, match=r"n_classes=2 is smaller than the 3 classes of the fitted labels"):
        linear_probe(split(60, [0, 1, 2]), test, val=split(30, [0, 1, 2]), task="multi-class", solver=solver,
                     n_boot=0, C_grid=(1.0,), n_classes=2)
    r3 = linear_probe(split(60, [0, 1, 2]), split(30, [0, 1]), val=split(30, [0, 1, 2]), task="multi-class",
                      solver=solver, n_boot=0, C_grid=(1.0,), metrics=("accuracy",))  # test lacks class 2: fine
    assert 0.0 <= r3.metrics["accuracy"] <= 1.0
