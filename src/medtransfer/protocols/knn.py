"""k-nearest-neighbour classification of frozen features: temperature-weighted cosine kNN, or majority vote.

Two variants, chosen by `metric` and `weighting`:

- ``metric="cosine", weighting="temperature"`` (the default, k=20, T=0.07): the kNN monitor of the SSL
  literature (Wu et al., InstDisc, CVPR 2018; lightly ``lightly/utils/benchmarking/knn.py:knn_predict``).
  Features are L2-normalised; neighbour j of a test sample gets weight exp(cos_j / T); a class scores the sum
  of its neighbours' weights, and the scores are normalised to probabilities.
- ``metric="euclidean", weighting="majority"`` (k=11 in MedMNIST+, Doerrich et al. 2025): every neighbour
  has one vote; probabilities are vote fractions. Predictions and probabilities equal scikit-learn's
  ``KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="euclidean")`` exactly, ties included
  (see `_sklearn_heap_neighbours`; among class-vote ties the smallest label wins, as scikit-learn's mode).

One caveat on "exactly": which of several train rows tied at the k-th distance scikit-learn keeps depends on
its OpenMP thread count once N_train > 256 (``ArgKmin`` then splits the train rows over threads and merges
their heaps). We replay its single-thread order, so our neighbours do not change with the machine; they equal
scikit-learn's under ``threadpoolctl.threadpool_limits(1, "openmp")``, for N_train <= 256, and whenever it
parallelises over test rows (N_test > N_train or N_test > 1024 * threads).

Neighbours do not depend on the chunk size, the thread count or the CPU. A float32 GEMM's last bit moves with
all three, and with tied similarities (integer-valued features, duplicated images) it used to pick which tied
neighbour was kept. Cosine candidates are found in float32 and decided in float64 (`_CosineSearch`);
similarities equal within ``_ties.TIE`` are ties, broken by the smaller train index, and tied neighbours weigh
the same. Euclidean distances are float64 throughout, and their rounding-level ties are made exact before the
heap replay. Votes are summed in float64, one neighbour rank at a time, so every machine adds them alike.

Multi-label targets (y (N, C) 0/1) get per-label (weighted) vote fractions, thresholded at 0.5 by the metrics.
Distances are computed in chunks of `chunk_size` test rows, so at most a (chunk_size, N_train) matrix exists
(float32 for cosine; float64 for Euclidean, whose train bank is also held as a float64 copy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from medtransfer.errors import ConfigError, DataError
from medtransfer.protocols._ties import TIE, group_heads, stable_topk, tie_groups
from medtransfer.protocols.base import ClassificationResult, Features, check_int, default_metrics, infer_task
from medtransfer.protocols.metrics import evaluate
from medtransfer.registry import did_you_mean

METRICS = ("cosine", "euclidean")
WEIGHTINGS = ("temperature", "majority")
_HEAP_BLOCK = 1024  # train rows per vectorised filter step of the heap replay


@dataclass(frozen=True)
class KNNConfig:
    """kNN settings, as the registry reads them from a config file (the keyword arguments of `knn`).

    Attributes:
        k: neighbours. 20 with temperature weighting (InstDisc, lightly); MedMNIST+ uses k=11 with majority.
        metric: ``cosine`` (on L2-normalised features) or ``euclidean``.
        weighting: ``temperature`` (weights exp(cos / T)) or ``majority`` (one vote per neighbour).
        temperature: T of the temperature weighting; 0.07 as in InstDisc / MoCo / lightly.
        n_boot: bootstrap resamples for the test-set confidence intervals.
        chunk_size: test rows per distance matrix; bounds memory at chunk_size * N_train floats.
    """

    k: int = 20
    metric: str = "cosine"
    weighting: str = "temperature"
    temperature: float = 0.07
    n_boot: int = 1000
    chunk_size: int = 4096


# ---------------------------------------------------------------- validation


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = did_you_mean(value, list(choices)) if isinstance(value, str) else ""
        raise ConfigError(f"The {name!r} parameter of knn must be one of {list(choices)}. "
                          f"Got {value!r} instead.{hint}")


def check_args(k: int, metric: str, weighting: str, temperature: float, chunk_size: int,
               n_train: int | None) -> None:
    """Raise ConfigError in the sklearn form for a bad knn setting (k in [1, n_train]; n_train None: no data yet,
    k >= 1 only)."""
    _check_choice("metric", metric, METRICS)
    _check_choice("weighting", weighting, WEIGHTINGS)
    if n_train is None:
        check_int("knn", "k", k, 1)
    else:
        check_int("knn", "k", k, 1, n_train, high_name="n_train",
                  note=f" The train split has n_train = {n_train} samples.")
    check_int("knn", "chunk_size", chunk_size, 1)
    if weighting == "temperature":
        if metric != "cosine":
            raise ConfigError(f"weighting='temperature' weights neighbours by exp(cosine similarity / T) and "
                              f"needs metric='cosine'. Got metric={metric!r}; use weighting='majority' with "
                              "metric='euclidean'.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(f"The 'temperature' parameter of knn must be a float in the range (0, inf). "
                              f"Got {temperature!r} instead.")


def _targets(y: np.ndarray, n_classes: int | None) -> np.ndarray:
    """(N, C) float32 vote targets: one-hot rows for labels (N,), the 0/1 rows themselves for multi-label."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    if y.size and (not np.array_equal(y, np.round(y)) or y.min() < 0):
        raise DataError("knn needs integer class labels 0, 1, ... in train.y. Got negative or fractional labels.")
    labels = y.astype(np.int64)
    n_classes = max(n_classes or 0, int(labels.max()) + 1 if labels.size else 0)
    return np.eye(n_classes, dtype=np.float32)[labels]


# ---------------------------------------------------------------- neighbours


def _float32_cosine_error(d: int) -> float:
    """A bound on |float32 cosine - exact cosine| of two vectors in `d` dimensions, for any summation order:
    the dot product's gamma_d (Higham, Accuracy and Stability of Numerical Algorithms, section 3.1; the sum of
    |x_i y_i| of unit vectors is at most 1) plus about d / 2 + 4 ulps from normalising each vector."""
    return (2 * d + 8) * 2.0**-24


@contextmanager
def _ieee_float32() -> Iterator[None]:
    """float32 matmuls at full precision for the block, whatever `torch.set_float32_matmul_precision` says."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _norm64(x: torch.Tensor) -> torch.Tensor:
    """float64 L2 norms (N,) of the rows of x (N, D), clamped to 1e-12 as F.normalize; in blocks of rows, which
    is 5x faster than converting all of x to float64 at once."""
    return torch.cat([torch.linalg.vector_norm(b.double(), dim=1) for b in x.split(256)]).clamp_(min=1e-12)


class _CosineSearch:
    """Top-k cosine neighbours that neither chunking, threads nor the CPU can change.

    float32 similarities (one GEMM, the fast part) pick the candidates: every train row whose exact cosine could
    reach the k-th largest, i.e. lies within twice the float32 error bound of the k-th float32 value. Their
    cosines are recomputed in float64 from the features, where rounding is ~1e-13, and `stable_topk` keeps the
    k best, ties (within TIE) going to the smaller train index. The first k + 16 float32 neighbours hold
    every candidate of almost every row (random-init ResNet features, cosines 0.996 +- 0.003 at the top: 20-56
    candidates for k = 20, 97% of rows at most 36; 2048-d Gaussian blobs: 20-28); a row with more gets its
    candidates counted in its whole row.
    """

    _EXTRA = 16  # candidates beyond k looked at first
    _GATHER_BYTES = 1 << 22  # float64 train rows gathered at once: 4 MiB stays in cache (3.4x faster than 64)

    def __init__(self, train_x: np.ndarray, k: int, *, exact_values: bool = True) -> None:
        """`exact_values=False` (majority votes) skips the float64 cosines where the k nearest are certain."""
        self.train = _tensor(np.ascontiguousarray(train_x), torch.float32)  # (N, D)
        self.norm = _norm64(self.train)  # (N,) float64
        self.bank = self.train / self.norm.float()[:, None]  # (N, D) float32 unit rows
        self.k, self.margin = k, 2 * _float32_cosine_error(self.train.shape[1]) + TIE
        self.exact_values = exact_values

    def __call__(self, query: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.tensor(query, dtype=torch.float32)  # (n, D)
        with _ieee_float32():  # the candidate bound assumes float32 GEMMs, not bf16/TF32 ("medium"/"high")
            sim = (q / _norm64(q).float()[:, None]) @ self.bank.T  # (n, N)
        n_train, k = sim.shape[1], self.k
        top, idx = sim.topk(min(n_train, k + self._EXTRA), dim=1)  # (n, W) descending
        need = (top >= top[:, k - 1:k] - self.margin).sum(1)  # (n,) candidates of each row within the W
        value = torch.empty(len(q), k, dtype=torch.float64)
        out = torch.empty(len(q), k, dtype=torch.int64)
        # Rows by the number of candidates: most need about k + a few; gather no more train rows than that.
        done = torch.zeros(len(q), dtype=torch.bool)
        for limit in (k, top.shape[1] - 1 if top.shape[1] < n_train else n_train):
            rows = torch.nonzero(~done & (need <= limit)).flatten()
            if len(rows) and limit == k and not self.exact_values:  # the k nearest are certain, values unused
                value[rows], out[rows] = top[rows, :k].double(), idx[rows, :k]
            elif len(rows):
                value[rows], out[rows] = self._best(q[rows], idx[rows, :int(need[rows].max())])
            done[rows] = True
        rows = torch.nonzero(~done).flatten()  # more candidates than W - 1: count them in the whole row
        if len(rows):
            m = int((sim[rows] >= top[rows, k - 1:k] - self.margin).sum(1).max())
            value[rows], out[rows] = self._best(q[rows], sim[rows].topk(m, dim=1).indices)
        return value, out

    def _best(self, q: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best (float64 cosine, index) of the candidate train rows idx (n, m) of the queries q (n, D)."""
        qd = q.double()
        rows = max(1, self._GATHER_BYTES // (idx.shape[1] * q.shape[1] * 8))
        dot = torch.cat([torch.bmm(self.train[idx[s:s + rows]].double(), qd[s:s + rows, :, None])[..., 0]
                         for s in range(0, len(q), rows)])  # (n, m)
        exact = dot / _norm64(q)[:, None] / self.norm[idx]
        return stable_topk(exact, idx, self.k)


def _heap_push(values: list[float], indices: list[int], val: float, idx: int) -> None:
    """One push onto scikit-learn's fixed-size max-heap, line by line as ``sklearn/utils/_heap.pyx``."""
    size, current = len(values), 0
    while True:
        left = 2 * current + 1
        right = left + 1
        if left >= size:
            break
        if right >= size:
            swap = left if values[left] > val else -1
        elif values[left] >= values[right]:
            swap = left if val < values[left] else -1
        else:
            swap = right if val < values[right] else -1
        if swap < 0:
            break
        values[current], indices[current] = values[swap], indices[swap]
        current = swap
    values[current], indices[current] = val, idx


def _sklearn_heap_neighbours(dist: np.ndarray, k: int) -> np.ndarray:
    """The k train indices scikit-learn keeps for one test row with squared distances `dist` (N,).

    scikit-learn's ``ArgKmin`` pushes the train rows in index order onto a max-heap of size k that rejects a
    value ``>=`` its root, so which of several rows tied at the k-th distance survive depends on the heap's
    layout: it is replayed here. Only rows closer than the current root can enter; a vectorised filter finds
    them (the root never grows, so the filter keeps a superset).
    """
    values, indices = [float(np.finfo(np.float64).max)] * k, [-1] * k  # scikit-learn starts from DBL_MAX
    for start in range(0, len(dist), _HEAP_BLOCK):
        for j in np.flatnonzero(dist[start:start + _HEAP_BLOCK] < values[0]) + start:
            if dist[j] < values[0]:
                _heap_push(values, indices, float(dist[j]), int(j))
    return np.array(indices, dtype=np.int64)


def _euclidean_topk(bank: torch.Tensor, bank_sq: torch.Tensor, query: np.ndarray, k: int) -> torch.Tensor:
    """Train indices (n, k) of the k nearest rows, chosen among distance ties as scikit-learn does.

    The squared distances are scikit-learn's ``EuclideanArgKmin`` values, max(0, (|x|^2 - 2 x.y) + |y|^2) in
    float64. Rows with a tie at the k-th distance (equal within TIE of |x|^2 + max |y|^2, the scale of the
    expansion's rounding) are settled by `_sklearn_heap_neighbours` on distances whose ties are made exactly
    equal, so a GEMM's last bit cannot pick the neighbour.
    """
    if k == len(bank):  # every train row is a neighbour: no choice to make
        return torch.arange(k).expand(len(query), k)
    q = torch.tensor(query, dtype=torch.float64)  # (n, D)
    q_sq = (q * q).sum(1)  # (n,)
    dist = (q_sq[:, None] - 2 * q @ bank.T + bank_sq[None]).clamp_(min=0)  # (n, N)
    scale = (q_sq + bank_sq.max())[:, None]  # (n, 1)
    near, idx = dist.topk(k + 1, dim=1, largest=False)  # (n, k + 1), ascending
    idx = idx[:, :k].clone()
    for row in torch.nonzero(near[:, k] - near[:, k - 1] <= TIE * scale[:, 0]).flatten().tolist():
        idx[row] = torch.from_numpy(_sklearn_heap_neighbours(_equal_ties(dist[row], scale[row]).numpy(), k))
    return idx


def _equal_ties(dist: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The distances (N,) with every tie group (values within TIE * scale) set to its smallest member."""
    value, order = dist.sort()
    out = torch.empty_like(dist)
    out[order] = group_heads(value, tie_groups(value, scale))
    return out


# ---------------------------------------------------------------- votes


def _tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """`a` as a tensor, sharing memory where numpy allows it (read-only arrays, e.g. memory maps, are copied)."""
    return (torch.from_numpy(a) if a.flags.writeable else torch.tensor(a)).to(dtype)


Search = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor | None]]


def _searcher(train_x: np.ndarray, k: int, metric: str, weighting: str) -> Search:
    """A function from query rows (n, D) to neighbour indices (n, k) and similarities (n, k) (cosine only)."""
    if metric == "cosine":
        search = _CosineSearch(train_x, k, exact_values=weighting == "temperature")

        def cosine(query: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
            sim, idx = search(query)  # (n, k) float64, best first, tied neighbours with equal values
            return idx, sim

        return cosine
    bank64 = _tensor(np.ascontiguousarray(train_x), torch.float64)  # (N, D)
    bank_sq = (bank64 * bank64).sum(1)  # (N,)
    return lambda query: (_euclidean_topk(bank64, bank_sq, query, k), None)


def knn_proba(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, n_classes: int | None = None,
              k: int = 20, metric: str = "cosine", weighting: str = "temperature", temperature: float = 0.07,
              chunk_size: int = 4096) -> np.ndarray:
    """Class (or per-label) vote probabilities of the test rows: (N_test, C).

    Args:
        train_x: (N_train, D) float32 or float64 features of the labelled bank.
        train_y: (N_train,) integer labels, or (N_train, C) 0/1 multi-label targets.
        test_x: (N_test, D) features to classify.
        n_classes: output columns for integer labels (at least max(train_y) + 1 are used).
        k: neighbours; metric, weighting, temperature, chunk_size: as in `knn`.

    Returns:
        Weighted vote fractions: rows sum to 1 for integer labels; per-label fractions in [0, 1] for multi-label.
    """
    check_args(k, metric, weighting, temperature, chunk_size, len(train_x))
    targets = _targets(train_y, n_classes).astype(np.float64)  # (N, C)
    search = _searcher(np.asarray(train_x), k, metric, weighting)
    test_x = np.asarray(test_x)
    out = [np.zeros((0, targets.shape[1]))]
    for start in range(0, len(test_x), chunk_size):
        idx, sim = search(test_x[start:start + chunk_size])  # (n, k), (n, k) or None
        out.append(_vote(targets, idx.numpy(), sim.numpy() if weighting == "temperature" and sim is not None
                         else None, temperature))
    return np.concatenate(out)


def _vote(targets: np.ndarray, idx: np.ndarray, sim: np.ndarray | None, temperature: float) -> np.ndarray:
    """Weighted vote fractions (n, C), float64, of the neighbours `idx` (n, k); uniform weights when `sim` is None.

    The neighbours are added one rank at a time, so every machine sums them in the same order and tied
    neighbours (equal `sim`) give exactly equal class scores.
    """
    if sim is None:
        weight = np.ones(idx.shape)  # (n, k)
    else:
        # exp((s - max s) / T): the max shift cancels in the normalisation and keeps exp(1 / T) from overflowing
        weight = np.exp((sim - sim[:, :1]) / temperature)  # (n, k), sim is sorted descending
    scores, total = np.zeros((len(idx), targets.shape[1])), np.zeros((len(idx), 1))  # (n, C), (n, 1)
    for j in range(idx.shape[1]):
        scores += targets[idx[:, j]] * weight[:, j:j + 1]
        total += weight[:, j:j + 1]
    return scores / total


def _n_classes(task: str, test_y: np.ndarray) -> int | None:
    """Score columns for integer labels: 2 for binary, else enough for every test label (train adds its own)."""
    if task == "binary":
        return 2
    return int(test_y.max()) + 1 if test_y.ndim == 1 and test_y.size else None


def knn(train: Features, test: Features, *, k: int = 20, metric: str = "cosine", weighting: str = "temperature",
        temperature: float = 0.07, task: str | None = None, metrics: tuple[str, ...] | None = None,
        n_boot: int = 1000, seed: int = 0, chunk_size: int = 4096) -> ClassificationResult:
    """Classify `test` by its k nearest `train` features; score the vote probabilities.

    Args:
        train: the labelled bank, y (N,) integer labels or (N, C) 0/1 multi-label targets.
        test: the features to classify and their labels.
        k: neighbours, in [1, n_train].
        metric: ``cosine`` or ``euclidean``.
        weighting: ``temperature`` (cosine only: weights exp(cos / T)) or ``majority`` (one vote each).
        temperature: T of the temperature weighting.
        task: the dataset card's task; None infers it from train.y.
        metrics: metrics with bootstrap 95% CIs (None: accuracy and AUC [, QW-kappa]); AUC uses the vote
            probabilities.
        n_boot: bootstrap resamples; seed: their seed.
        chunk_size: test rows per distance matrix.

    Examples:
        >>> x = np.array([[0.0], [1.0], [10.0], [11.0]])
        >>> y = np.array([0, 0, 1, 1])
        >>> r = knn(Features(x, y), Features(x, y), k=1, metric="euclidean", weighting="majority", n_boot=0)
        >>> r.metrics["accuracy"]
        1.0
    """
    task = task or infer_task(train.y)
    metrics = metrics or default_metrics(task)
    proba = knn_proba(train.x, train.y, test.x, n_classes=_n_classes(task, test.y), k=k, metric=metric,
                      weighting=weighting, temperature=temperature, chunk_size=chunk_size)
    scores = evaluate(task, test.y, proba, metrics, n_boot=n_boot, seed=seed)
    return ClassificationResult(
        protocol="knn", metrics={name: v[0] for name, v in scores.items()},
        ci={name: (v[1], v[2]) for name, v in scores.items()},
        chosen={"k": k, "metric": metric, "weighting": weighting,
                "temperature": temperature if weighting == "temperature" else None},
        n_train=train.n, n_test=test.n, seed=seed,
        config={"k": k, "metric": metric, "weighting": weighting, "temperature": temperature,
                "n_boot": n_boot, "chunk_size": chunk_size},
        y_true=test.y, y_score=proba,
    )
