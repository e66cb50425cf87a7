from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from medtransfer.errors import ConfigError
from medtransfer.protocols._ties import first_max
from medtransfer.protocols.base import Features
from medtransfer.protocols.knn import KNNConfig, knn, knn_proba

MAJORITY = {"metric": "euclidean", "weighting": "majority"}


def _sklearn(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """KNeighborsClassifier predictions and probabilities, scikit-learn on one OpenMP thread.

    With more threads and N_train > 256, scikit-learn splits the train rows over threads and which of several
    equidistant rows it keeps changes with the thread count; knn replays its single-thread order.
    """
    ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="euclidean").fit(x_train, y_train)
    with threadpool_limits(limits=1, user_api="openmp"):
        return ref.predict(x_test), ref.predict_proba(x_test)


def _tied_data(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train x, train y, test x with many exactly equal distances (except kind="normal")."""
    n, d = int(rng.integers(200, 600)), int(rng.integers(1, 5))
    if kind == "integer":  # a 3^d grid: most distances tie, and at the k-th neighbour too
        return rng.integers(0, 3, (n, d)).astype(float), rng.integers(0, 4, n), rng.integers(0, 3, (60, d)) * 1.0
    if kind == "float32":
        x = rng.integers(0, 3, (n + 60, d)).astype(np.float32)
        return x[:n], rng.integers(0, 3, n), x[n:]
    x = rng.normal(size=(n, d))
    if kind == "duplicates":  # each train point three times, with different labels; test points on them
        x = np.repeat(x[: n // 3 + 1], 3, axis=0)[:n]
        return x, rng.integers(0, 3, n), np.concatenate([x[:30], rng.normal(size=(30, d))])
    return x, rng.integers(0, 5, n), rng.normal(size=(60, d))


@pytest.mark.parametrize("kind", ["integer", "float32", "duplicates", "normal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_majority_equals_sklearn_including_ties(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test = _tied_data(rng, kind)
    for k in (1, 4, 11):
        pred, proba = _sklearn(x_train, y_train, x_test, k)
        ours = knn_proba(x_train, y_train, x_test, k=k, **MAJORITY)  # (N_test, C)
        np.testing.assert_array_equal(ours.argmax(1), pred)  # argmax: smallest label among tied votes
        np.testing.assert_allclose(ours[:, np.unique(y_train)], proba, atol=1e-7)


def test_majority_equals_sklearn_with_its_default_threads_on_a_small_bank(rng: np.random.Generator) -> None:
    # N_train <= 256 is one chunk of train rows for scikit-learn: its order is the same on any thread count
    x_train, x_test = rng.integers(0, 3, (250, 3)) * 1.0, rng.integers(0, 3, (80, 3)) * 1.0
    y_train = rng.integers(0, 3, 250)
    ref = KNeighborsClassifier(n_neighbors=11, algorithm="brute", metric="euclidean").fit(x_train, y_train)
    ours = knn_proba(x_train, y_train, x_test, k=11, **MAJORITY)
    np.testing.assert_array_equal(ours.argmax(1), ref.predict(x_test))


def test_majority_auc_equals_sklearn_proba_auc(rng: np.random.Generator) -> None:
    for n_classes in (2, 3):
        y_train, y_test = rng.integers(0, n_classes, 300), rng.integers(0, n_classes, 120)
        x_train = y_train[:, None] + rng.normal(size=(300, 4)) * 1.5
        x_test = y_test[:, None] + rng.normal(size=(120, 4)) * 1.5
        r = knn(Features(x_train, y_train), Features(x_test, y_test), k=11, n_boot=50, **MAJORITY)
        pred, proba = _sklearn(x_train, y_train, x_test, 11)
        auc = roc_auc_score(y_test, proba[:, 1]) if n_classes == 2 else roc_auc_score(y_test, proba, multi_class="ovr")
        assert r.metrics["auc"] == pytest.approx(auc, abs=1e-12)
        assert r.metrics["accuracy"] == pytest.approx(np.mean(pred == y_test), abs=1e-12)


def _reference_knn(x_train: np.ndarray, targets: np.ndarray, x_test: np.ndarray, k: int, t: float) -> np.ndarray:
    """lightly ``knn_predict``, one test sample at a time in float64: class scores sum exp(cos / T), normalised."""
    bank = x_train / np.linalg.norm(x_train, axis=1, keepdims=True)
    out = []
    for x in x_test:
        sim = bank @ (x / np.linalg.norm(x))  # (N,)
        top = np.argsort(-sim)[:k]
        weight = np.exp(sim[top] / t)  # (k,)
        scores = (targets[top] * weight[:, None]).sum(0)  # (C,)
        out.append(scores / weight.sum())
    return np.array(out)


def test_temperature_variant_equals_reference(rng: np.random.Generator) -> None:
    y_train = rng.integers(0, 4, 400)
    x_train, x_test = rng.normal(size=(400, 16)) + y_train[:, None] * 0.2, rng.normal(size=(90, 16))
    for k, t in ((20, 0.07), (5, 0.5), (400, 0.02)):
        ours = knn_proba(x_train, y_train, x_test, k=k, temperature=t)
        ref = _reference_knn(x_train, np.eye(4)[y_train], x_test, k, t)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))


def test_temperature_hand_worked() -> None:
    # Train points at 0, 60, 90 and 180 degrees from the test point (norms 1, 1, 2, 3: cosine ignores them):
    # cosines 1, 0.5, 0, -1. With k = 3 and T = 0.5 the weights are e^(1/0.5) = e^2 (class 0), e^1 (class 1)
    # and e^0 = 1 (class 1): p(class 0) = e^2 / (e^2 + e + 1) = 7.389 / 11.107 = 0.6652.
    x_train = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 2.0], [-3.0, 0.0]])
    y_train, x_test = np.array([0, 1, 1, 0]), np.array([[2.0, 0.0]])
    p0 = math.e**2 / (math.e**2 + math.e + 1)
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=3, temperature=0.5), [[p0, 1 - p0]], rtol=1e-6)
    # k = 4 adds the point at 180 degrees with weight e^(-2) to class 0: (e^2 + e^-2) / (e^2 + e + 1 + e^-2)
    p0 = (math.e**2 + math.e**-2) / (math.e**2 + math.e + 1 + math.e**-2)
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=4, temperature=0.5), [[p0, 1 - p0]], rtol=1e-6)
    # T = 0.01: e^(1 / 0.01) = e^100 overflows float32, e^((cos - max cos) / T) = 1, e^-50, e^-100 does not.
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=3, temperature=0.01), [[1.0, 0.0]], atol=1e-12)


def test_majority_hand_worked() -> None:
    # 1-d train points 0, 1 (class 0) and 3, 4 (class 1).
    x_train, y_train = np.array([[0.0], [1.0], [3.0], [4.0]]), np.array([0, 0, 1, 1])
    # Test 2.4: distances 2.4, 1.4, 0.6, 1.6; the 3 nearest are 3 (class 1), 1 (class 0), 4 (class 1): 2/3 class 1.
    np.testing.assert_allclose(knn_proba(x_train, y_train, np.array([[2.4]]), k=3, **MAJORITY), [[1 / 3, 2 / 3]])
    # Test 2.0, k = 2: the neighbours 1 and 3 are both at distance 1, one vote each; the tie goes to class 0
    # (the smallest label, as scikit-learn's mode), and binary accuracy (p1 > 0.5) agrees.
    proba = knn_proba(x_train, y_train, np.array([[2.0]]), k=2, **MAJORITY)
    np.testing.assert_array_equal(proba, [[0.5, 0.5]])
    # Test 3.5, k = 2: distances 3.5, 2.5, 0.5, 0.5; both neighbours (3 and 4) are class 1.
    r = knn(Features(x_train, y_train), Features(np.array([[2.0], [3.5]]), np.array([0, 1])), k=2, n_boot=0,
            metrics=("accuracy",), **MAJORITY)
    assert r.metrics["accuracy"] == 1.0


COSINE_MAJORITY = {"metric": "cosine", "weighting": "majority"}
VARIANTS = [{}, MAJORITY, COSINE_MAJORITY]


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_ties_give_the_same_votes_for_every_chunk_size_and_thread_count(variant: dict[str, str],
                                                                            dtype: type) -> None:
    # Integer features on a 4^5 grid: most cosines and distances tie exactly, also at the k-th neighbour, so
    # a neighbour chosen by the GEMM's last bit (which moves with the chunk size and the threads) would show.
    rng = np.random.default_rng(11)
    x_train, y_train = rng.integers(0, 4, (300, 5)).astype(dtype), rng.integers(0, 3, 300)
    x_test = rng.integers(0, 4, (100, 5)).astype(dtype)
    one = knn_proba(x_train, y_train, x_test, k=7, chunk_size=4096, **variant)
    for threads in (1, 2):
        with _torch_threads(threads):
            for chunk_size in (1, 2, 3, 5, 16, 33, 64, 99, 100, 128, 1000, 4096):
                many = knn_proba(x_train, y_train, x_test, k=7, chunk_size=chunk_size, **variant)
                np.testing.assert_allclose(many, one, rtol=0, atol=1e-9, err_msg=f"{threads=} {chunk_size=}")
                np.testing.assert_array_equal(first_max(many), first_max(one))


def _exact_cosine_neighbours(x_train: np.ndarray, x_test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k train rows of largest cosine, ties to the smaller index, in exact rational arithmetic (integer
    features): cos = s * sqrt(s * dot^2 / (|x|^2 |y|^2)), compared through the signed square. Returns the
    indices (N_test, k) and their float cosines."""
    idx, cos = [], []
    for q in x_test.astype(np.int64).tolist():
        keys = []
        for j, b in enumerate(x_train.astype(np.int64).tolist()):
            dot, nq, nb = sum(u * v for u, v in zip(q, b, strict=True)), sum(u * u for u in q), sum(v * v for v in b)
            keys.append((-(Fraction(dot * abs(dot), nq * nb) if nq and nb else Fraction(0)), j))
        top = sorted(keys)[:k]
        idx.append([j for _, j in top])
        cos.append([math.copysign(math.sqrt(abs(key)), -key) for key, _ in top])
    return np.array(idx), np.array(cos)


def test_cosine_ties_go_to_the_smaller_train_index() -> None:
    rng = np.random.default_rng(3)
    x_train, y_train = rng.integers(0, 3, (120, 3)) * 1.0, rng.integers(0, 4, 120)
    x_test = rng.integers(0, 3, (40, 3)) * 1.0
    x_train[0] = x_test[0] = 0.0  # a zero vector: cosine 0 with everything, as F.normalize makes it
    idx, cos = _exact_cosine_neighbours(x_train, x_test, 9)
    votes = np.eye(4)[y_train[idx]]  # (40, 9, 4)
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=9, **COSINE_MAJORITY), votes.mean(1),
                               atol=1e-12)
    weight = np.exp((cos - cos[:, :1]) / 0.07)[..., None]  # (40, 9, 1)
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=9), (votes * weight).sum(1) / weight.sum(1),
                               rtol=1e-9)


def test_cosine_majority_equals_sklearn_without_ties(rng: np.random.Generator) -> None:
    # Continuous features: no ties, so scikit-learn's brute-force cosine search keeps the same neighbours.
    y_train = rng.integers(0, 3, 400)
    x_train, x_test = rng.normal(size=(400, 8)) + y_train[:, None] * 0.3, rng.normal(size=(120, 8))
    ref = KNeighborsClassifier(n_neighbors=9, algorithm="brute", metric="cosine").fit(x_train, y_train)
    ours = knn_proba(x_train, y_train, x_test, k=9, **COSINE_MAJORITY)
    np.testing.assert_allclose(ours, ref.predict_proba(x_test), atol=1e-12)


def test_cosine_ties_hand_worked() -> None:
    # Train rows 0-3 all point along (1, 0) with norms 1, 2, 3, 4: cosine 1 with the test point (5, 0), a four-
    # way tie. k = 2 keeps rows 0 and 1 (the smaller indices), both class 0; a float32 GEMM may keep any two.
    x_train = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [0.0, 1.0]])
    y_train, x_test = np.array([0, 0, 1, 1, 1]), np.array([[5.0, 0.0]])
    np.testing.assert_array_equal(knn_proba(x_train, y_train, x_test, k=2, **COSINE_MAJORITY), [[1.0, 0.0]])
    # k = 3 adds row 2 (class 1): 2/3 class 0. With temperature weights the three tied rows weigh the same.
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=3, **COSINE_MAJORITY), [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(knn_proba(x_train, y_train, x_test, k=3), [[2 / 3, 1 / 3]])


def test_cosine_near_ties_still_follow_the_similarity() -> None:
    # A difference of 1e-7 in cosine is real (float32 features carry it), not a rounding tie: the closer row
    # is kept even though its index is larger.
    x_train = np.array([[1.0, 1e-3], [1.0, 0.0]], dtype=np.float32)
    proba = knn_proba(x_train, np.array([0, 1]), np.array([[1.0, 0.0]], dtype=np.float32), k=1, **COSINE_MAJORITY)
    np.testing.assert_array_equal(proba, [[0.0, 1.0]])


def test_multi_label_vote_fractions(rng: np.random.Generator) -> None:
    x = rng.normal(size=(260, 6))
    y = (x[:, :3] + rng.normal(size=(260, 3)) * 0.5 > 0).astype(np.uint8)  # label j follows feature j
    train, test = Features(x[:200], y[:200]), Features(x[200:], y[200:])
    # majority: the fraction of the k nearest (Euclidean) train points that carry each label
    d = ((test.x[:, None] - train.x[None]) ** 2).sum(-1)  # (60, 200)
    expected = train.y[np.argsort(d, axis=1)[:, :11]].mean(1)  # (60, 3)
    np.testing.assert_allclose(knn_proba(train.x, train.y, test.x, k=11, **MAJORITY), expected, atol=1e-7)
    ours = knn_proba(train.x, train.y, test.x, k=20, temperature=0.1)
    np.testing.assert_allclose(ours, _reference_knn(train.x, train.y, test.x, 20, 0.1), rtol=1e-4, atol=1e-6)
    r = knn(train, test, k=11, task="multi-label", n_boot=20, **MAJORITY)
    assert r.metrics["auc"] > 0.8
    assert r.metrics["accuracy"] == pytest.approx(((expected > 0.5) == test.y).mean())


def test_result_fields(rng: np.random.Generator) -> None:
    y = rng.integers(0, 3, 150)
    f = Features(y[:, None] + rng.normal(size=(150, 4)), y)
    r = knn(f.subset(np.arange(100)), f.subset(np.arange(100, 150)), k=5, n_boot=100)
    assert r.protocol == "knn" and r.n_train == 100 and r.n_test == 50
    assert r.chosen == {"k": 5, "metric": "cosine", "weighting": "temperature", "temperature": 0.07}
    assert set(r.metrics) == set(r.ci) == {"accuracy", "auc"}
    lo, hi = r.ci["accuracy"]
    assert lo <= r.metrics["accuracy"] <= hi
    assert knn(f, f, k=3, n_boot=0, **MAJORITY).chosen["temperature"] is None  # unused by majority votes


def test_config_defaults_match_the_function() -> None:
    params = inspect.signature(knn).parameters
    for field in dataclasses.fields(KNNConfig):
        assert params[field.name].default == field.default, field.name


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, r"The 'k' parameter of knn must be an int in the range \[1, n_train\]. Got 0 instead. "
               r"The train split has n_train = 30 samples."),
    ({"k": 31}, r"The 'k' parameter of knn must be an int in the range \[1, n_train\]. Got 31 instead."),
    ({"k": 2.0}, r"The 'k' parameter of knn must be an int .* Got 2.0 instead."),
    ({"k": True}, r"The 'k' parameter of knn must be an int .* Got True instead."),
    ({"metric": "cosin"}, r"The 'metric' parameter of knn must be one of \['cosine', 'euclidean'\]. "
                          r"Got 'cosin' instead. Did you mean 'cosine'\?"),
    ({"weighting": "majorty"}, r"Got 'majorty' instead. Did you mean 'majority'\?"),
    ({"temperature": 0.0}, r"The 'temperature' parameter of knn must be a float in the range \(0, inf\). Got 0.0"),
    ({"metric": "euclidean"}, r"weighting='temperature' .* needs metric='cosine'. Got metric='euclidean'; use "
                              r"weighting='majority'"),
    ({"chunk_size": 0}, r"The 'chunk_size' parameter of knn must be an int in the range \[1, inf\). Got 0"),
])
def test_bad_arguments(kwargs: dict[str, object], message: str, rng: np.random.Generator) -> None:
    f = Features(rng.normal(size=(30, 3)), np.arange(30) % 2)
    with pytest.raises(ConfigError, match=message):
        knn(f, f, **kwargs)  # type: ignore[arg-type]
