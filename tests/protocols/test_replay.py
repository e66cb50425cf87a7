"""WarmLBFGS must walk scikit-learn's warm-started L-BFGS trajectory bit for bit, also where it stops at the cap."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from medtransfer.protocols import Features, linear_probe
from medtransfer.protocols._replay import WarmLBFGS
from medtransfer.protocols.linear import ANTON2022_C_GRID


def _data(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 features like a CNN's (ReLU of a low-rank signal, column scales over orders of magnitude) with a
    weak class signal: large-C fits on them stop at the 100-iteration cap, as the reference's do."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = rng.normal(size=(n, 8)) @ rng.normal(size=(8, d))
    x = np.maximum(z + 0.3 * rng.normal(size=(n, d)), 0) * rng.lognormal(0, 1.5, size=d)
    x[:, :3] += y[:, None] * 0.5
    return x.astype(np.float32), y


@pytest.mark.parametrize(("k", "loss", "factor"), [(2, "sigmoid", 2.0), (3, "softmax", 1.0)])
def test_same_iterations_and_coefficients_as_sklearn_warm_start(k, loss, factor):
    x, y = _data(60, 80, k)
    clf = LogisticRegression(warm_start=True)
    ours = WarmLBFGS(loss, n_classes=k)
    capped = 0
    for C in ANTON2022_C_GRID[::4]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.set_params(C=factor * C).fit(x, y)
        ours.fit(x, y, factor * C)
        assert ours.n_iter_ == int(clf.n_iter_.max())
        ref = np.concatenate([clf.coef_, clf.intercept_[:, None]], axis=1)
        np.testing.assert_array_equal(ours.coef_.astype(np.float32), ref)
        proba = ours.predict_proba(x)
        np.testing.assert_allclose(proba[:, -1] if k == 2 else proba, clf.predict_proba(x)[:, 1] if k == 2
                                   else clf.predict_proba(x), rtol=1e-6, atol=1e-7)
        capped += ours.n_iter_ >= ours.max_iter
    assert capped > 0, "the case must include fits stopped at the iteration cap, where trajectories are fragile"


def test_float64_features_are_fitted_in_float64():
    x, y = _data(40, 10, 2)
    clf = LogisticRegression(warm_start=True, C=3.0).fit(x.astype(np.float64), y)
    ours = WarmLBFGS("sigmoid").fit(x.astype(np.float64), y, 3.0)
    np.testing.assert_array_equal(ours.coef_[0, :-1], clf.coef_[0])


@pytest.mark.parametrize("k", [2, 3])
def test_anton2022_preset_gives_the_reference_loops_result(k):
    x, y = _data(150, 100, k, seed=1)
    xt, yt = _data(80, 100, k, seed=2)
    train, test = Features(x, y), Features(xt, yt)
    replay = linear_probe(train, test, preset="anton2022", n_boot=0)
    loop = linear_probe(train, test, preset="anton2022", solver="sklearn", n_boot=0)
    assert replay.config["solver"] == "replay"
    assert replay.chosen == loop.chosen
    # accuracy equal; AUC may differ: scikit-learn returns float32 probabilities for float32 features, which
    # saturate at 1.0 and tie, while the replay computes them in float64 from the same coefficients
    assert replay.metrics["accuracy"] == loop.metrics["accuracy"]
    assert [g["converged"] for g in replay.grid] == [g["converged"] for g in loop.grid]
    assert not all(g["converged"] for g in replay.grid)


def test_multi_label_replay_equals_one_vs_rest_loop():
    x, _ = _data(90, 20, 2)
    rng = np.random.default_rng(3)
    y = (rng.random((90, 3)) < 0.4).astype(int)
    y[:, 0] = (x[:, 0] > np.median(x[:, 0])).astype(int)
    train, test = Features(x[:60], y[:60]), Features(x[60:], y[60:])
    grid = ANTON2022_C_GRID[::6]
    replay = linear_probe(train, test, preset="anton2022", C_grid=grid, metrics=("auc",), n_boot=0)
    loop = linear_probe(train, test, preset="anton2022", C_grid=grid, metrics=("auc",), solver="sklearn", n_boot=0)
    assert replay.chosen == loop.chosen
    assert replay.metrics["auc"] == pytest.approx(loop.metrics["auc"], abs=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_class_missing_from_the_fitted_rows_is_encoded_away_as_scikit_learn_does():
    x, y = _data(60, 30, 3)
    keep = y != 1  # class 1 absent: scikit-learn fits 2 logits for classes [0, 2]
    clf = LogisticRegression(warm_start=True, C=10.0).fit(x[keep], y[keep])
    ours = WarmLBFGS("softmax", n_classes=3).fit(x[keep], y[keep], 10.0)
    assert ours.n_iter_ == int(clf.n_iter_.max())
    np.testing.assert_array_equal(ours.coef_.astype(np.float32)[:, :-1], clf.coef_)
    proba = ours.predict_proba(x, n_classes=3)
    assert proba.shape == (60, 3) and not proba[:, 1].any()
    np.testing.assert_allclose(proba[:, [0, 2]], clf.predict_proba(x), rtol=1e-5, atol=1e-6)


def test_replay_and_sklearn_loop_agree_when_a_class_is_missing_from_the_fitted_rows():
    x, y = _data(90, 40, 3, seed=4)
    y[np.flatnonzero(y == 2)[1:]] = 0  # class 2 keeps one image: the legacy hold-out may take it from the fit rows
    xt, yt = _data(60, 40, 3, seed=5)
    train, test = Features(x, y), Features(xt, yt)
    grid = ANTON2022_C_GRID[::5]
    replay = linear_probe(train, test, preset="anton2022", C_grid=grid, metrics=("accuracy",), n_boot=0)
    loop = linear_probe(train, test, preset="anton2022", C_grid=grid, metrics=("accuracy",), solver="sklearn",
                        n_boot=0)
    assert replay.chosen == loop.chosen and replay.metrics == loop.metrics
