from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from medtransfer.errors import ConfigError
from medtransfer.protocols import Features, LinearConfig, linear_probe


def _blobs(rng: np.random.Generator, n: int, classes: int = 3, dim: int = 8) -> Features:
    centers = np.arange(classes)[:, None] * np.linspace(0.5, 1.0, dim)[None]  # (C, D) overlapping blobs
    y = rng.integers(0, classes, n)
    return Features(centers[y] + rng.normal(size=(n, dim)), y)


def test_matches_sklearn_with_the_chosen_c(rng: np.random.Generator) -> None:
    train, val, test = _blobs(rng, 200), _blobs(rng, 80), _blobs(rng, 150)
    r = linear_probe(train, test, val=val, task="multi-class", metrics=("accuracy", "auc"))
    scaler = StandardScaler().fit(train.x)
    best = max(sorted(LinearConfig().C_grid), key=lambda C: accuracy_score(
        val.y, LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(train.x), train.y)
        .predict(scaler.transform(val.x))))
    ref = LogisticRegression(C=best, max_iter=1000).fit(scaler.transform(train.x), train.y)
    proba = ref.predict_proba(scaler.transform(test.x))
    assert r.chosen["C"] == best
    assert r.metrics["accuracy"] == pytest.approx(accuracy_score(test.y, proba.argmax(1)), abs=1e-9)
    # warm-started fits stop at the solver tolerance from a different start: equal to ~1e-4, not bit-exact
    assert r.metrics["auc"] == pytest.approx(roc_auc_score(test.y, proba, multi_class="ovr"), abs=1e-3)
    lo, hi = r.ci["accuracy"]
    assert lo <= r.metrics["accuracy"] <= hi and hi - lo < 0.3
    assert len(r.grid) == len(LinearConfig().C_grid) and r.n_train == 200 and r.n_test == 150


def test_without_val_split_holds_out_train_and_never_sees_test(rng: np.random.Generator) -> None:
    train, test = _blobs(rng, 200, classes=2), _blobs(rng, 100, classes=2)
    shuffled = Features(test.x, rng.permutation(test.y))  # test labels must not change the chosen C
    a = linear_probe(train, test, task="binary", metrics=("auc", "accuracy"))
    b = linear_probe(train, shuffled, task="binary", metrics=("auc", "accuracy"))
    assert a.chosen == b.chosen and a.grid == b.grid
    assert a.metrics["auc"] > 0.8 > b.metrics["auc"] - 0.2


def test_multi_label(rng: np.random.Generator) -> None:
    x = rng.normal(size=(200, 6))
    y = (x[:, :3] > 0).astype(np.uint8)  # label j is the sign of feature j
    r = linear_probe(Features(x[:150], y[:150]), Features(x[150:], y[150:]), task="multi-label",
                     metrics=("auc", "accuracy"))
    assert r.metrics["auc"] > 0.95


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="'C_grid' parameter of LinearConfig"):
        LinearConfig(C_grid=(0.0,))
    with pytest.raises(ConfigError, match="'val_fraction' parameter"):
        LinearConfig(val_fraction=1.5)
