"""The batched logistic-regression solver against scikit-learn on the same data and C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp
from sklearn.linear_model import LogisticRegression

from medtransfer.protocols._logreg import LogRegFit, fit_logreg, torch_threads


def _blobs(rng: np.random.Generator, n: int = 150, classes: int = 3, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping blobs on badly scaled axes (0.1 to 10) with an offset: what raw features look like."""
    y = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) + np.arange(classes)[y, None] * np.linspace(0.3, 0.8, dim)
    return x * np.logspace(-1, 1, dim) + 3.0, y


def _sklearn(x: np.ndarray, y: np.ndarray, C: float) -> LogisticRegression:
    # newton-cholesky converges on badly scaled data, where lbfgs would stop on its ftol first
    return LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y)


@pytest.mark.parametrize("C", [1e-3, 1.0, 1e3])
def test_multinomial_matches_sklearn(rng: np.random.Generator, C: float) -> None:
    x, y = _blobs(rng)
    fit = fit_logreg(x, y, [C], loss="softmax", tol=1e-10)
    ref = _sklearn(x, y, C)
    assert fit.converged.all()
    np.testing.assert_allclose(fit.predict_proba(x)[0], ref.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(fit.coef[0].T, ref.coef_, rtol=1e-4, atol=1e-6 / C)
    # the intercepts are free along (1, ..., 1): compare them centred
    b, ref_b = fit.intercept[0], ref.intercept_
    np.testing.assert_allclose(b - b.mean(), ref_b - ref_b.mean(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("C", [1e-3, 1.0, 1e3])
def test_binary_matches_sklearn(rng: np.random.Generator, C: float) -> None:
    x, y = _blobs(rng, classes=2)
    fit = fit_logreg(x, y, [C], loss="sigmoid", tol=1e-10)
    ref = _sklearn(x, y, C)
    np.testing.assert_allclose(fit.predict_proba(x)[0, :, 0], ref.predict_proba(x)[:, 1], atol=1e-7)
    np.testing.assert_allclose(fit.coef[0, :, 0], ref.coef_[0], rtol=1e-5, atol=1e-8)
    assert fit.intercept[0, 0] == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-8)


def test_multi_label_is_one_vs_rest(rng: np.random.Generator) -> None:
    x, y3 = _blobs(rng)
    y = np.stack([y3 == 0, y3 == 1, y3 != 1], axis=1).astype(int)  # (N, 3) labels
    Cs = [0.01, 100.0]
    fit = fit_logreg(x, y, Cs, loss="sigmoid", tol=1e-10)
    assert fit.coef.shape == (2, x.shape[1], 3) and fit.intercept.shape == (2, 3)
    for i, C in enumerate(Cs):
        for label in range(3):
            ref = _sklearn(x, y[:, label], C)
            np.testing.assert_allclose(fit.predict_proba(x)[i, :, label], ref.predict_proba(x)[:, 1], atol=1e-7)


def test_whole_grid_equals_one_c_at_a_time(rng: np.random.Generator) -> None:
    x, y = _blobs(rng)
    Cs = [1e-4, 0.1, 10.0, 1e4]
    grid = fit_logreg(x, y, Cs, loss="softmax", tol=1e-10)
    for i, C in enumerate(Cs):
        one = fit_logreg(x, y, [C], loss="softmax", tol=1e-10)
        np.testing.assert_allclose(grid.predict_proba(x)[i], one.predict_proba(x)[0], atol=1e-7)


def test_binary_softmax_equals_sigmoid_at_twice_c(rng: np.random.Generator) -> None:
    # 2-class softmax: logits (z0, z1) with z0 = -z1 at the optimum, so p1 = sigmoid(2 z1); the penalty
    # |w0|² + |w1|² = |v|²/2 for v = 2 w1, i.e. the one-logit objective with C doubled.
    x, y = _blobs(rng, classes=2)
    soft = fit_logreg(x, y, [0.05, 5.0], loss="softmax", tol=1e-10)
    sig = fit_logreg(x, y, [0.1, 10.0], loss="sigmoid", tol=1e-10)
    np.testing.assert_allclose(soft.predict_proba(x)[..., 1], sig.predict_proba(x)[..., 0], atol=1e-7)


def _objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, C: float) -> float:
    z = x @ w + b
    return float(C * np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * w @ w)


def test_separable_large_c_converges(rng: np.random.Generator) -> None:
    # N < D with correlated, badly scaled features (as CNN features): the classes are separable and at
    # C = 1e6 the optimum lies far out on a flat valley, where L-BFGS stalls; the Newton finish converges.
    x = np.abs(rng.normal(size=(60, 8)) @ rng.normal(size=(8, 120)) + 0.3 * rng.normal(size=(60, 120)))
    x *= np.logspace(-2, 0, 120)
    y = (x[:, :3].sum(1) > np.median(x[:, :3].sum(1))).astype(int)
    fit = fit_logreg(x, y, [1e6], loss="sigmoid", tol=1e-9)
    assert fit.converged.all() and fit.n_iter.max() > 100  # went past the L-BFGS phase into Newton
    ref = LogisticRegression(C=1e6, tol=1e-12, max_iter=100_000).fit(x, y)
    ours = _objective(x, y, fit.coef[0, :, 0], fit.intercept[0, 0], 1e6)
    assert ours <= _objective(x, y, ref.coef_[0], ref.intercept_[0], 1e6) * (1 + 1e-9)
    assert np.all((expit(x @ fit.coef[0, :, 0] + fit.intercept[0, 0]) > 0.5) == y)


def test_softmax_objective_at_optimum_beats_perturbations(rng: np.random.Generator) -> None:
    x, y = _blobs(rng, n=60, classes=4, dim=3)
    C = 10.0
    fit = fit_logreg(x, y, [C], loss="softmax", tol=1e-10)

    def obj(w: np.ndarray, b: np.ndarray) -> float:
        z = x @ w + b
        return float(C * np.sum(logsumexp(z, axis=1) - z[np.arange(len(y)), y]) + 0.5 * np.sum(w**2))

    best = obj(fit.coef[0], fit.intercept[0])
    for _ in range(5):
        assert best <= obj(fit.coef[0] + 1e-4 * rng.normal(size=fit.coef[0].shape), fit.intercept[0])


def test_warm_start_from_the_solution_stops_at_once(rng: np.random.Generator) -> None:
    x, y = _blobs(rng)
    fit = fit_logreg(x, y, [0.5, 50.0], loss="softmax", tol=1e-8)
    again = fit_logreg(x, y, [0.5, 50.0], loss="softmax", tol=1e-8, init=fit)
    assert isinstance(again, LogRegFit) and again.n_iter.max() <= 1
    np.testing.assert_allclose(again.coef, fit.coef, atol=1e-6)


def test_thread_setting_is_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
