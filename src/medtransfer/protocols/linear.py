"""Linear probe on frozen features: logistic regression, C chosen on validation data only."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from medtransfer.config import to_dict
from medtransfer.errors import ConfigError
from medtransfer.protocols.base import ClassificationResult, Features, default_metrics, infer_task
from medtransfer.protocols.metrics import evaluate, metric_value


@dataclass(frozen=True)
class LinearConfig:
    """Linear-probe settings.

    Attributes:
        C_grid: inverse regularisation strengths tried, weakest regularisation last (searched warm-started).
        standardize: z-score features with train statistics first; makes one C grid fit every backbone,
            whose feature scales differ by orders of magnitude.
        val_fraction: share of train held out for choosing C when the dataset has no validation split.
        max_iter: L-BFGS iterations per C. 100 is scikit-learn's default (the reference studies' setting);
            each C starts from the previous C's solution, so later fits need few iterations.
        n_boot: bootstrap resamples for the test-set confidence intervals.
    """

    C_grid: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 7))
    standardize: bool = True
    val_fraction: float = 0.2
    max_iter: int = 100
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.C_grid or any(c <= 0 for c in self.C_grid):
            raise ConfigError(f"The 'C_grid' parameter of LinearConfig must be a non-empty list of positive floats. "
                              f"Got {list(self.C_grid)} instead.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"The 'val_fraction' parameter of LinearConfig must be a float in the range (0, 1). "
                              f"Got {self.val_fraction!r} instead.")


def _classifier(task: str, max_iter: int) -> LogisticRegression | OneVsRestClassifier:
    lr = LogisticRegression(max_iter=max_iter, warm_start=True)
    return OneVsRestClassifier(lr) if task == "multi-label" else lr


def _proba(clf: LogisticRegression | OneVsRestClassifier, x: np.ndarray) -> np.ndarray:
    return clf.predict_proba(x)  # (N, C): class probabilities, or per-label probabilities for multi-label


def split_validation(train: Features, fraction: float, seed: int) -> tuple[Features, Features]:
    """A seeded random hold-out of `fraction` of train (used only when the dataset has no val split)."""
    order = np.random.default_rng(seed).permutation(train.n)
    n_val = max(1, int(round(fraction * train.n)))
    return train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))


def _scaler(x_fit: np.ndarray, enabled: bool) -> Callable[[np.ndarray], np.ndarray]:
    """z-score with the statistics of `x_fit` (or only cast to float64 when disabled)."""
    if not enabled:
        return lambda x: np.asarray(x, dtype=np.float64)
    scaler = StandardScaler().fit(x_fit)
    return lambda x: scaler.transform(x)


def _fit(clf: LogisticRegression | OneVsRestClassifier, C: float, x: np.ndarray,
         y: np.ndarray) -> LogisticRegression | OneVsRestClassifier:
    """Refit `clf` at `C`, warm-started from its current solution (multi-label refits each label afresh)."""
    clf.set_params(**({"estimator__C": C} if isinstance(clf, OneVsRestClassifier) else {"C": C}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def linear_probe(train: Features, test: Features, *, task: str | None = None,
                 metrics: tuple[str, ...] | None = None, select: str | None = None, val: Features | None = None, seed: int = 0,
                 cfg: LinearConfig | None = None) -> ClassificationResult:
    """Fit logistic regression on `train`, pick C on `val` (or a seeded hold-out of train), score `test`.

    The final classifier is refit on all of `train` with the chosen C; test data never reaches the choice.

    Args:
        task: the dataset card's task (binary, multi-class, multi-label, ordinal); None infers it from train.y.
        metrics: metrics to report with bootstrap 95% CIs (None: accuracy, AUC [, QW-kappa]); `select`
            (default: the first) chooses C.
    """
    cfg = cfg or LinearConfig()
    task = task or infer_task(train.y)
    metrics = metrics or default_metrics(task)
    select = select or metrics[0]
    held_out = val is None
    fit_on, val = split_validation(train, cfg.val_fraction, seed) if val is None else (train, val)
    xs = _scaler(fit_on.x, cfg.standardize)
    grid, fitted = [], {}
    clf, x_fit = _classifier(task, cfg.max_iter), xs(fit_on.x)
    for C in sorted(cfg.C_grid):  # weakest C first: each fit starts from the more regularised solution
        fitted[C] = copy.deepcopy(_fit(clf, C, x_fit, fit_on.y))
        grid.append({"C": C, select: metric_value(select, task, val.y, _proba(fitted[C], xs(val.x)))})
    best = max(grid, key=lambda g: g[select])  # the first (strongest regularisation) wins ties
    final = fitted[best["C"]]
    if held_out:  # C was chosen on a hold-out of train: refit on all of train
        xs = _scaler(train.x, cfg.standardize)
        final = _fit(final, best["C"], xs(train.x), train.y)
    scores = evaluate(task, test.y, _proba(final, xs(test.x)), metrics, n_boot=cfg.n_boot, seed=seed)
    return ClassificationResult(
        protocol="linear", metrics={k: v[0] for k, v in scores.items()},
        ci={k: (v[1], v[2]) for k, v in scores.items()}, chosen={"C": best["C"]}, grid=grid,
        n_train=train.n, n_test=test.n, seed=seed, config=to_dict(cfg),
    )
