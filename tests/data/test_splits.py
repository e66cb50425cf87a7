from __future__ import annotations

import numpy as np
import pytest

from medtransfer.data.splits import budget_name, label_subset
from medtransfer.errors import ConfigError, DataError


@pytest.fixture
def labels(rng: np.random.Generator) -> np.ndarray:
    return np.repeat([0, 1, 2], [500, 300, 200])[rng.permutation(1000)]


def test_fraction_is_stratified(labels: np.ndarray) -> None:
    idx = label_subset(labels, fraction=0.1, seed=0)
    assert np.bincount(labels[idx]).tolist() == [50, 30, 20]
    assert len(set(idx.tolist())) == len(idx) and np.all(np.diff(idx) > 0)


def test_same_seed_same_subset_and_nested(labels: np.ndarray) -> None:
    a = label_subset(labels, fraction=0.1, seed=3)
    assert np.array_equal(a, label_subset(labels.copy(), fraction=0.1, seed=3))
    assert not np.array_equal(a, label_subset(labels, fraction=0.1, seed=4))
    small = set(label_subset(labels, fraction=0.01, seed=3).tolist())
    assert small <= set(a.tolist()) <= set(label_subset(labels, fraction=0.5, seed=3).tolist())


def test_one_percent_keeps_every_class(labels: np.ndarray) -> None:
    idx = label_subset(labels, fraction=0.001, seed=0)
    assert np.bincount(labels[idx]).tolist() == [1, 1, 1]
    assert np.array_equal(label_subset(labels, fraction=1.0), np.arange(1000))


def test_per_class(labels: np.ndarray) -> None:
    assert np.bincount(labels[label_subset(labels, per_class=20, seed=1)]).tolist() == [20, 20, 20]
    with pytest.raises(DataError, match="Class 2 has 200 training images; a budget of 250 per class"):
        label_subset(labels, per_class=250)


def test_multi_label_keeps_the_stated_fraction(rng: np.random.Generator) -> None:
    y = (rng.random((10_000, 14)) < 0.08).astype(np.uint8)  # ChestMNIST-like: many rare label combinations
    idx = label_subset(y, fraction=0.01, seed=0)
    assert len(idx) == 100 and np.array_equal(idx, label_subset(y, fraction=0.01, seed=0))
    assert set(idx.tolist()) <= set(label_subset(y, fraction=0.1, seed=0).tolist())
    with pytest.raises(ConfigError, match="per-class label budget is undefined for multi-label"):
        label_subset(y, per_class=5)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of"), ({"fraction": 0.5, "per_class": 2}, "exactly one of"),
    ({"fraction": 0.0}, r"'fraction' parameter of label_subset must be a float in the range \(0, 1\]. Got 0.0"),
    ({"per_class": 0}, r"'per_class' parameter of label_subset must be an int in the range \[1, inf\). Got 0"),
])
def test_bad_budget(labels: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        label_subset(labels, **kwargs)


def test_budget_name() -> None:
    assert budget_name(0.1, None) == "10%" and budget_name(None, 20) == "20/class" and budget_name(1.0, None) == "100%"
