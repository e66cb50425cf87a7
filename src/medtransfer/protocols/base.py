"""What every protocol takes (Features) and returns (ClassificationResult)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError, DataError


def _as_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def flatten_single(y: np.ndarray) -> np.ndarray:
    """(N, 1) labels -> (N,): MedMNIST stores single labels as (N, 1); other shapes are returned unchanged."""
    y = np.asarray(y)
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y


@dataclass(frozen=True)
class Features:
    """Frozen features of one split: x (N, D); y (N,) int labels or (N, C) 0/1 multi-label targets.

    Labels of shape (N, 1) are flattened to (N,) here, once, for every protocol.

    Examples:
        >>> Features(x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1])).n
        4
    """

    x: np.ndarray
    y: np.ndarray
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = _as_numpy(self.x), _as_numpy(self.y)
        if x.ndim != 2:
            raise DataError(f"Features.x must be 2-d (N, D). Got shape {x.shape}.")
        if y.ndim not in (1, 2) or len(y) != len(x):
            raise DataError(f"Features.y must be (N,) or (N, C) with N = len(x) = {len(x)}. Got shape {y.shape}.")
        if self.ids is not None and len(self.ids) != len(x):
            raise DataError(f"Features.ids has {len(self.ids)} entries for {len(x)} feature rows.")
        y = flatten_single(y)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def n(self) -> int:
        return len(self.x)

    def subset(self, index: np.ndarray) -> Features:
        ids = tuple(self.ids[i] for i in index) if self.ids is not None else None
        return Features(self.x[index], self.y[index], ids)


def check_int(owner: str, name: str, value: object, low: int, high: int | None = None, *, high_name: str = "",
              note: str = "") -> None:
    """Raise ConfigError in the sklearn form unless `value` is an int in [low, high] (high None: no upper bound)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, np.integer))
    if bad or value < low or (high is not None and value > high):  # type: ignore[operator]
        upper = "inf)" if high is None else f"{high_name or high}]"
        raise ConfigError(f"The {name!r} parameter of {owner} must be an int in the range [{low}, {upper}. "
                          f"Got {value!r} instead.{note}")


def infer_task(y: np.ndarray) -> str:
    """The task a label array implies: (N, C) -> multi-label; two classes -> binary; more -> multi-class.

    Ordinal tasks look multi-class from the labels alone: pass ``task="ordinal"`` (the dataset card's task).
    """
    y = np.asarray(y)
    if y.ndim == 2:
        return "multi-label"
    return "binary" if len(np.unique(y)) <= 2 else "multi-class"


def default_metrics(task: str) -> tuple[str, ...]:
    """Metrics reported when the caller names none: accuracy and AUC, plus QW-kappa for ordinal tasks."""
    return ("accuracy", "auc", "qw_kappa") if task == "ordinal" else ("accuracy", "auc")


@dataclass(frozen=True)
class ClassificationResult:
    """A protocol's outcome on the test split.

    Attributes:
        metrics: metric name -> value on the test split.
        ci: metric name -> (low, high) 95% interval (bootstrap over test samples, or over episodes/seeds).
        chosen: the hyper-parameters the protocol selected on validation data (e.g. {"C": 0.1}).
        grid: the validation score of every candidate it tried.
        y_true, y_score: the test labels and the predicted probabilities the metrics were computed from (None for
            protocols whose interval is not over test samples: few-shot episodes, segmentation); the store keeps
            them so that two models can be compared on the same test images (a paired bootstrap).
    """

    protocol: str
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    chosen: dict[str, Any] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    y_score: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); the per-sample predictions are left out."""
        d = dataclasses.asdict(dataclasses.replace(self, y_true=None, y_score=None))
        del d["y_true"], d["y_score"]
        d["ci"] = {k: list(v) for k, v in self.ci.items()}
        return d
