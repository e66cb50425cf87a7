from __future__ import annotations

import dataclasses
import inspect
from fractions import Fraction

import numpy as np
import pytest
import torch

from medtransfer.errors import ConfigError, DataError
from medtransfer.protocols import fewshot
from medtransfer.protocols.base import Features
from medtransfer.protocols.fewshot import FewShotConfig, episode_accuracies, episode_indices, few_shot


def _naive_accuracies(x: np.ndarray, index: np.ndarray, n_support: int) -> np.ndarray:
    """One episode at a time, as the reference: prototypes, -squared distances, argmax, accuracy."""
    out = []
    for episode in index:  # (W, S + Q)
        prototypes = np.stack([x[row[:n_support]].mean(0) for row in episode])  # (W, D)
        logits = [[-np.sum((x[i] - p) ** 2) for p in prototypes] for row in episode for i in row[n_support:]]
        truth = np.repeat(np.arange(len(episode)), index.shape[2] - n_support)  # (W * Q,)
        out.append(np.mean(np.argmax(logits, axis=1) == truth))
    return np.array(out)


def _pool(rng: np.random.Generator, n_classes: int, per_class: int, dim: int, spread: float) -> Features:
    """Gaussian blobs of unit variance around class centres N(0, spread²); spread=0 makes the classes identical."""
    y = np.repeat(np.arange(n_classes), per_class)
    centers = rng.normal(size=(n_classes, dim)) * spread  # (C, D)
    return Features(centers[y] + rng.normal(size=(len(y), dim)), y)


def test_hand_worked_two_way_one_shot() -> None:
    # Class 0: (0, 0) and (1, 0); class 1: (4, 0) and (1.5, 0). One episode: supports 0 and 2, queries 1 and 3.
    # 1-shot prototypes are the supports themselves, p0 = (0, 0) and p1 = (4, 0).
    # Query (1, 0): squared distances 1 and 9 -> logits (-1, -9) -> class 0, right.
    # Query (1.5, 0): squared distances 2.25 and 6.25 -> logits (-2.25, -6.25) -> class 0, wrong. Accuracy 1/2.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [4.0, 0.0], [1.5, 0.0]])
    index = np.array([[[0, 1], [2, 3]]])  # (E=1, W=2, S+Q=2)
    np.testing.assert_array_equal(episode_accuracies(x, index, n_support=1), [0.5])
    # Supports 1 and 3 instead: p0 = (1, 0), p1 = (1.5, 0). Query (0, 0): 1 and 2.25 -> class 0, right.
    # Query (4, 0): 9 and 6.25 -> class 1, right. Accuracy 1.
    np.testing.assert_array_equal(episode_accuracies(x, np.array([[[1, 0], [3, 2]]]), n_support=1), [1.0])


@pytest.mark.parametrize(("n_way", "n_support", "n_query"), [(2, 1, 1), (3, 5, 4), (5, 2, 7)])
def test_batched_equals_naive_loop(n_way: int, n_support: int, n_query: int, monkeypatch: pytest.MonkeyPatch,
                                   rng: np.random.Generator) -> None:
    pool = _pool(rng, n_classes=6, per_class=15, dim=8, spread=0.5)
    index = episode_indices(pool.y, n_way=n_way, n_support=n_support, n_query=n_query, episodes=40, seed=3)
    expected = _naive_accuracies(pool.x, index, n_support)
    np.testing.assert_array_equal(episode_accuracies(pool.x, index, n_support), expected)
    monkeypatch.setattr(fewshot, "_MAX_BYTES", 1)  # one episode per chunk
    np.testing.assert_array_equal(episode_accuracies(pool.x, index, n_support), expected)
    assert 0.3 < expected.mean() < 0.99  # neither trivial nor chance: a comparison that can fail


def _exact_accuracies(x: np.ndarray, index: np.ndarray, n_support: int) -> np.ndarray:
    """The naive loop in exact rational arithmetic (integer features): a tie goes to the first class."""
    out = []
    for episode in index:  # (W, S + Q)
        protos = [[Fraction(int(v)) for v in x[row[:n_support]].sum(0)] for row in episode]  # n_support * mean
        hits = []
        for w, row in enumerate(episode):
            for i in row[n_support:]:
                dist = [sum((n_support * int(a) - b) ** 2 for a, b in zip(x[i], p, strict=True)) for p in protos]
                hits.append(dist.index(min(dist)) == w)  # list.index: the first of equal distances
        out.append(np.mean(hits))
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equidistant_queries_go_to_the_first_class_for_every_chunking_and_thread_count(
        dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    # Integer features on a 3^3 grid with 3-shot prototypes (means k/3, not exact in binary): many queries
    # are exactly as far from two prototypes, which float arithmetic rounds either way unless ties are kept.
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(4), 30)
    x = rng.integers(0, 3, (len(y), 3)).astype(dtype)
    index = episode_indices(y, n_way=3, n_support=3, n_query=5, episodes=60, seed=1)
    expected = _exact_accuracies(x, index, 3)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for max_bytes in (1, 4000, 16 * 2**20):  # 1, a few and all episodes per chunk
                monkeypatch.setattr(fewshot, "_MAX_BYTES", max_bytes)
                np.testing.assert_array_equal(episode_accuracies(x, index, 3), expected)
    finally:
        torch.set_num_threads(before)


def test_episodes_hold_distinct_classes_and_images(rng: np.random.Generator) -> None:
    y = rng.permutation(np.repeat([3, 7, 8, 20], [9, 30, 12, 50]))  # labels need not be 0..C-1
    index = episode_indices(y, n_way=3, n_support=4, n_query=5, episodes=300, seed=0)
    assert index.shape == (300, 3, 9)
    labels = y[index]  # (E, W, S + Q)
    assert (labels == labels[:, :, :1]).all()  # one class per row
    assert all(len(set(episode[:, 0])) == 3 for episode in labels)  # distinct classes per episode
    assert all(len(set(episode.ravel())) == episode.size for episode in index)  # distinct images
    # the class of 9 images appears whole in every draw of it, each image equally often a support or a query
    rows = index[labels[:, :, 0] == 3]  # (R, 9)
    assert (np.sort(rows, axis=1) == np.sort(np.flatnonzero(y == 3))).all()
    assert len(rows) > 150


def test_draws_are_uniform() -> None:
    # 20000 draws of 3 of 10 images: each image is drawn with probability 0.3 and is first with probability 0.1
    local = fewshot._distinct_subsets(np.full(20000, 10), 3, np.random.default_rng(0))  # (20000, 3)
    np.testing.assert_allclose(np.bincount(local.ravel(), minlength=10) / 20000, 0.3, atol=0.015)
    np.testing.assert_allclose(np.bincount(local[:, 0], minlength=10) / 20000, 0.1, atol=0.01)


def test_seeded(rng: np.random.Generator) -> None:
    pool = _pool(rng, n_classes=5, per_class=12, dim=4, spread=1.0)
    kwargs = {"n_way": 3, "n_support": 2, "n_query": 3, "episodes": 50}
    a, b, c = few_shot(pool, seed=1, **kwargs), few_shot(pool, seed=1, **kwargs), few_shot(pool, seed=2, **kwargs)
    assert a == b
    np.testing.assert_array_equal(episode_indices(pool.y, seed=1, **kwargs), episode_indices(pool.y, seed=1, **kwargs))
    assert not np.array_equal(episode_indices(pool.y, seed=1, **kwargs), episode_indices(pool.y, seed=2, **kwargs))
    assert a.metrics != c.metrics


def test_ci_is_the_reference_formula(rng: np.random.Generator) -> None:
    pool = _pool(rng, n_classes=4, per_class=20, dim=6, spread=0.7)
    r = few_shot(pool, n_way=2, n_support=5, n_query=5, episodes=120, seed=4)
    acc = _naive_accuracies(pool.x, episode_indices(pool.y, n_way=2, n_support=5, n_query=5, episodes=120, seed=4), 5)
    half = 1.96 * np.std(acc) / np.sqrt(120)  # np.std: ddof=0, as ssl-transfer / SSL_medicalimaging
    assert r.metrics["accuracy"] == pytest.approx(acc.mean(), abs=1e-12)
    assert r.chosen["ci_halfwidth"] == pytest.approx(half, abs=1e-12) and half > 0
    assert r.ci["accuracy"] == pytest.approx((acc.mean() - half, acc.mean() + half), abs=1e-12)
    assert r.protocol == "fewshot" and r.n_train == 80 and r.n_test == 120 * 2 * 5 and r.seed == 4


def test_separable_blobs_and_chance(rng: np.random.Generator) -> None:
    blobs = _pool(rng, n_classes=6, per_class=40, dim=16, spread=20.0)
    assert few_shot(blobs, n_way=5, n_support=5, n_query=10, episodes=100).metrics["accuracy"] == 1.0
    noise = _pool(rng, n_classes=6, per_class=40, dim=16, spread=0.0)  # one distribution: nothing to learn
    assert few_shot(noise, n_way=5, n_support=5, n_query=10, episodes=300).metrics["accuracy"] == pytest.approx(
        1 / 5, abs=0.03)


def test_float32_features(rng: np.random.Generator) -> None:
    pool = _pool(rng, n_classes=4, per_class=20, dim=8, spread=3.0)
    r64 = few_shot(pool, n_way=3, n_support=3, n_query=4, episodes=30)
    r32 = few_shot(Features(pool.x.astype(np.float32), pool.y), n_way=3, n_support=3, n_query=4, episodes=30)
    assert r32.metrics["accuracy"] == pytest.approx(r64.metrics["accuracy"], abs=1e-3)


def test_config_defaults_match_the_function() -> None:
    params = inspect.signature(few_shot).parameters
    for field in dataclasses.fields(FewShotConfig):
        assert params[field.name].default == field.default, field.name


def test_small_class(rng: np.random.Generator) -> None:
    y = np.repeat(np.arange(6), [40, 40, 40, 12, 40, 3])
    pool = Features(rng.normal(size=(len(y), 4)), y)
    with pytest.raises(DataError, match=r"^Class 3 has 12 images; 5-way 20-shot with 15 queries needs 35 per class\. "
                                        r"So are classes 5\. Lower n_support or n_query"):
        few_shot(pool)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_way": 4}, ConfigError, r"The 'n_way' parameter of few_shot must be an int in the range \[2, n_classes\]. "
                                r"Got 4 instead. The features hold n_classes = 3 classes."),
    ({"n_way": 1}, ConfigError, r"'n_way' parameter .* Got 1 instead"),
    ({"n_support": 0}, ConfigError, r"The 'n_support' parameter of few_shot must be an int in the range \[1, inf\)"),
    ({"episodes": 2.5}, ConfigError, r"The 'episodes' parameter .* Got 2.5 instead"),
])
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str,
                       rng: np.random.Generator) -> None:
    pool = Features(rng.normal(size=(60, 4)), np.repeat(np.arange(3), 20))
    with pytest.raises(error, match=message):
        few_shot(pool, **{"n_way": 2, "n_support": 5, "n_query": 5, **kwargs})  # type: ignore[arg-type]


def test_multi_label_is_refused(rng: np.random.Generator) -> None:
    pool = Features(rng.normal(size=(60, 4)), rng.integers(0, 2, (60, 3)))
    with pytest.raises(DataError, match=r"few_shot needs one class label per image, y of shape \(N,\). Got y of "
                                        r"shape \(60, 3\) \(multi-label targets\)"):
        few_shot(pool, n_way=2, n_support=2, n_query=2)
