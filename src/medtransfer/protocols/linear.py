"""Linear probe on frozen features: L2 logistic regression over a grid of C, C chosen on validation data only.

Two presets (docs: PROTOCOLS.md §1.6):

- ``"default"``: z-scored features, a half-decade C grid, C chosen on the dataset's val split (else a seeded
  20% hold-out of train) by the first metric.
- ``"anton2022"``: the probe of Anton et al. (jonahanton/SSL_medicalimaging ``linear.py``): raw features,
  C = 1 / wd for wd = ``torch.logspace(-6, 5, 45)`` tried from C = 1e6 down, a 20% hold-out of train drawn as
  the reference draws it (even when the dataset has a val split), the first C with the highest validation
  score (their strict ``>``), a refit on all of train, and binary tasks fitted as a 2-class softmax.

The default solves the whole grid at once (`_logreg.fit_logreg`) to a tight tolerance. The reference instead
runs scikit-learn's L-BFGS for at most 100 iterations per C, warm-started along the grid, which on raw features
stops far from the optimum at large C: its numbers are those of that early stopping, and they move with the
arithmetic's rounding (BLAS threads changed its PneumoniaMNIST accuracy by 0.3 points). So ``anton2022`` runs
``solver="replay"`` (`_replay.WarmLBFGS`): the reference loop's own trajectory, bit for bit, on one BLAS thread,
without scikit-learn's per-call overhead. ``solver="sklearn"`` runs the loop itself through scikit-learn;
``solver="fast"`` gives the converged optimum of every C with the reference's other settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medtransfer.config import from_dict, to_dict
from medtransfer.errors import ConfigError, DataError, UnknownNameError
from medtransfer.protocols._logreg import LogRegFit, fit_logreg
from medtransfer.protocols._replay import WarmLBFGS
from medtransfer.protocols.base import ClassificationResult, Features, default_metrics, infer_task
from medtransfer.protocols.metrics import evaluate, metric_value
from medtransfer.registry import did_you_mean

# C = 1 / wd with the reference's float32 wd grid, so every C equals the reference's bit for bit.
ANTON2022_C_GRID: tuple[float, ...] = tuple(1.0 / float(wd) for wd in torch.logspace(-6, 5, 45))


@dataclass(frozen=True)
class LinearConfig:
    """Linear-probe settings; the presets in `PRESETS` are instances of it.

    Attributes:
        C_grid: inverse regularisation strengths (scikit-learn's ``C``), tried in this order; on equal
            validation scores the first wins.
        standardize: z-score features with the statistics of the data the model is fitted on; makes one C
            grid fit every backbone, whose feature scales differ by orders of magnitude.
        val_source: ``"val"`` chooses C on the dataset's val split when one is given (else on a hold-out of
            train); ``"train"`` always holds out ``val_fraction`` of train, as the reference does.
        val_fraction: share of train held out for choosing C; the model is then refitted on all of train.
        legacy_split: draw the hold-out as the reference (``np.random.seed(seed)``, shuffle, the first
            floor(fraction·N) rows) instead of with ``np.random.default_rng(seed)``.
        binary_softmax: fit binary tasks as a 2-class softmax (scikit-learn's ``multi_class="multinomial"``
            in the reference). Its optimum is the one-logit model at 2C, which is what is solved.
        solver: ``"fast"`` (all C at once, converged to `tol`), ``"sklearn"`` (the reference loop: one
            warm-started ``LogisticRegression`` fit per C with scikit-learn's defaults, tol 1e-4 and 100
            iterations; `tol` and `max_iter` do not apply) or ``"replay"`` (that loop's exact trajectory, bit for
            bit, without scikit-learn's per-call overhead; `tol` and `max_iter` do not apply either).
        tol: the fast solver stops a C once the largest gradient entry of the mean log-loss objective is at
            most this. 1e-8, not scikit-learn's 1e-4: at large C the objective is so flat that 1e-6 still
            leaves validation predictions that differ from the optimum's.
        max_iter: the fast solver's iteration budget (L-BFGS, then Newton for the few C still running).
        n_threads: torch and BLAS threads of the solver (None: leave the process's settings). One: its
            iterations are many small operations, and where cores are busy (grid cells running side by side)
            each thread synchronisation waits for a descheduled thread; two threads ran 15-30x slower than one on a
            shared 2-core machine.
        n_boot: bootstrap resamples for the test-set confidence intervals.
        select: the metric that chooses C; None takes the first metric the caller reports (the dataset
            card's headline metric). ``anton2022`` selects on accuracy, as the reference's ``clf.score``.
    """

    C_grid: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))
    standardize: bool = True
    val_source: Literal["val", "train"] = "val"
    val_fraction: float = 0.2
    legacy_split: bool = False
    binary_softmax: bool = False
    solver: Literal["fast", "replay", "sklearn"] = "fast"
    tol: float = 1e-8
    max_iter: int = 1000
    n_threads: int | None = 1
    n_boot: int = 1000
    select: str | None = None

    def __post_init__(self) -> None:
        if not self.C_grid or any(not c > 0 for c in self.C_grid):
            raise ConfigError(f"The 'C_grid' parameter of LinearConfig must be a non-empty list of positive floats. "
                              f"Got {list(self.C_grid)} instead.")
        _check_range("val_fraction", self.val_fraction, 0.0 < self.val_fraction < 1.0, "a float in the range (0, 1)")
        _check_range("tol", self.tol, self.tol > 0, "a float in the range (0, inf)")
        _check_range("max_iter", self.max_iter, self.max_iter >= 1, "an int in the range [1, inf)")
        _check_range("n_boot", self.n_boot, self.n_boot >= 0, "an int in the range [0, inf)")
        threads_ok = self.n_threads is None or self.n_threads >= 1
        _check_range("n_threads", self.n_threads, threads_ok, "None or an int in the range [1, inf)")
        for name, allowed in (("val_source", ("val", "train")), ("solver", ("fast", "replay", "sklearn"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"The {name!r} parameter of LinearConfig must be one of {list(allowed)}. "
                                  f"Got {getattr(self, name)!r} instead.")


def _check_range(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"The {name!r} parameter of LinearConfig must be {what}. Got {value!r} instead.")


PRESETS: dict[str, LinearConfig] = {
    "default": LinearConfig(),
    "anton2022": LinearConfig(C_grid=ANTON2022_C_GRID, standardize=False, val_source="train", legacy_split=True,
                              binary_softmax=True, select="accuracy", solver="replay"),
}


def resolve_config(preset: str = "default", cfg: LinearConfig | None = None, **overrides: Any) -> LinearConfig:
    """The preset's config (or `cfg`) with `overrides` (LinearConfig fields) applied and validated.

    Raises:
        UnknownNameError: for an unknown preset or override key, with the closest names.
        ConfigError: for both a non-default preset and `cfg`, or an override of the wrong type or range.
    """
    if preset not in PRESETS:
        raise UnknownNameError(f"Unknown linear-probe preset {preset!r}.{did_you_mean(preset, list(PRESETS))} "
                               f"Allowed presets: {', '.join(PRESETS)}.")
    if cfg is not None and preset != "default":
        raise ConfigError(f"Pass either preset={preset!r} or cfg=, not both: cfg replaces the preset. Use "
                          f"linear_probe(..., preset={preset!r}, **overrides) to change a preset.")
    base = cfg if cfg is not None else PRESETS[preset]
    if not overrides:
        return base
    return from_dict(LinearConfig, {**dataclasses.asdict(base), **overrides}, where=f"linear-probe preset {preset!r}")


def split_validation(train: Features, fraction: float, seed: int, *, legacy: bool = False) -> tuple[Features, Features]:
    """A seeded random hold-out of `fraction` of train: (the rest, the hold-out).

    Args:
        legacy: the reference's draw (jonahanton/SSL_medicalimaging ``linear.py``): ``np.random.seed(seed)``,
            shuffle ``range(N)``, hold out the first floor(fraction·N) indices, rows kept in shuffled order.
    """
    if legacy:  # rows in the shuffled order, as the reference indexes them: the order changes float sums
        order = np.arange(train.n)
        np.random.RandomState(seed).shuffle(order)  # the same permutation as np.random.seed + np.random.shuffle
        n_val = max(1, int(np.floor(fraction * train.n)))
        return train.subset(order[n_val:]), train.subset(order[:n_val])
    order = np.random.default_rng(seed).permutation(train.n)
    n_val = max(1, int(round(fraction * train.n)))
    return train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))


def _keep_float(x: np.ndarray) -> np.ndarray:
    """float32/float64 arrays as they are (the reference fits float32 features in float32), others as float64."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _scaler(x_fit: np.ndarray, enabled: bool) -> Callable[[np.ndarray], np.ndarray]:
    """z-score with the statistics of `x_fit` (or the features unchanged when disabled)."""
    if not enabled:
        return _keep_float
    scaler = StandardScaler().fit(x_fit)
    return lambda x: scaler.transform(np.asarray(x, dtype=np.float64))


def _labels(task: str, y: np.ndarray) -> np.ndarray:
    """(N,) int classes (Features already flattened (N, 1) labels) or (N, L) 0/1 multi-label targets."""
    y = np.asarray(y)
    if task == "multi-label":
        return y.astype(np.int64)
    if y.ndim != 1:
        raise DataError(f"A {task} task needs labels of shape (N,) or (N, 1). Got {y.shape}.")
    return y.astype(np.int64)


def _check_classes(task: str, y: np.ndarray) -> None:
    if task != "multi-label" and len(np.unique(y)) < 2:
        raise DataError(f"The linear probe needs at least two classes to fit; the {len(y)} training samples all "
                        f"have class {int(y[0])}. Use a larger train split or a smaller val_fraction.")


def _scores(task: str, proba: np.ndarray) -> np.ndarray:
    """Probabilities in the layout `metrics` expects: binary one-logit (N, 1) becomes (N, 2)."""
    return np.concatenate([1 - proba, proba], axis=1) if task == "binary" and proba.shape[1] == 1 else proba


@dataclass(frozen=True)
class _Data:
    """The arrays one probe run uses, scaled and labelled; `refit` is None when C was chosen on a val split."""

    task: str
    fit_x: np.ndarray
    fit_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    refit: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (train x, train y, test x) scaled by train


def _prepare(task: str, train: Features, test: Features, val: Features | None, cfg: LinearConfig,
             seed: int) -> _Data:
    """Choose the validation data (never test), scale every split with the statistics of the fitted data."""
    held_out = val is None or cfg.val_source == "train"
    fit_on, val = split_validation(train, cfg.val_fraction, seed, legacy=cfg.legacy_split) if held_out else (train, val)
    assert val is not None, "a validation split was chosen above"
    scale = _scaler(fit_on.x, cfg.standardize)
    fit_y = _labels(task, fit_on.y)
    _check_classes(task, fit_y)
    refit = None
    if held_out:  # C is chosen on a hold-out of train: the final model is refitted on all of train
        scale_all = _scaler(train.x, cfg.standardize)
        refit = (scale_all(train.x), _labels(task, train.y), scale_all(test.x))
    return _Data(task, scale(fit_on.x), fit_y, scale(val.x), _labels(task, val.y), scale(test.x), refit)


def _loss(task: str, cfg: LinearConfig) -> tuple[Literal["softmax", "sigmoid"], float]:
    """The loss solved and the factor on C (2 for a binary 2-class softmax solved as one logit)."""
    if task in ("multi-class", "ordinal"):
        return "softmax", 1.0
    return "sigmoid", 2.0 if task == "binary" and cfg.binary_softmax else 1.0


def _fast(d: _Data, cfg: LinearConfig) -> tuple[list[np.ndarray], list[bool], Callable[[int], np.ndarray]]:
    """Validation probabilities and convergence of every C, and test probabilities for a chosen C index."""
    loss, factor = _loss(d.task, cfg)
    k = int(max(d.fit_y.max(), d.val_y.max())) + 1 if loss == "softmax" else None
    cs = [factor * c for c in cfg.C_grid]
    solve = functools.partial(fit_logreg, loss=loss, n_classes=k, tol=cfg.tol, max_iter=cfg.max_iter,
                              n_threads=cfg.n_threads)
    path = solve(d.fit_x, d.fit_y, cs)
    val_proba = [_scores(d.task, p) for p in path.predict_proba(d.val_x, n_threads=cfg.n_threads)]  # (N_val, K)
    converged = [bool(c.all()) for c in path.converged]

    def test_proba(i: int) -> np.ndarray:
        if d.refit is None:
            return _scores(d.task, path.predict_proba(d.test_x, n_threads=cfg.n_threads)[i])
        x, y, x_test = d.refit
        init = _take(path, i) if not cfg.standardize else None  # same coordinates: start from the hold-out fit
        final = solve(x, y, [cs[i]], init=init)
        return _scores(d.task, final.predict_proba(x_test, n_threads=cfg.n_threads)[0])

    return val_proba, converged, test_proba


def _take(fit: LogRegFit, i: int) -> LogRegFit:
    return dataclasses.replace(fit, coef=fit.coef[i:i + 1], intercept=fit.intercept[i:i + 1],
                               n_iter=fit.n_iter[i:i + 1], converged=fit.converged[i:i + 1])


def _sklearn_fit(clf: LogisticRegression | OneVsRestClassifier, C: float, x: np.ndarray,
                 y: np.ndarray) -> LogisticRegression | OneVsRestClassifier:
    """Refit `clf` at `C`, warm-started from its current solution (multi-label refits each label afresh).

    When `y` has another number of classes than the last fit (a class the hold-out took entirely), scikit-learn
    refuses the warm start and the reference would stop; this starts that fit from zeros instead, as the replay does.
    """
    clf.set_params(**({"estimator__C": C} if isinstance(clf, OneVsRestClassifier) else {"C": C}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if isinstance(clf, LogisticRegression) and hasattr(clf, "coef_") and \
                len(clf.classes_) != len(np.unique(y)):
            del clf.coef_, clf.intercept_
        return clf.fit(x, y)


def _sklearn(d: _Data, cfg: LinearConfig) -> tuple[list[np.ndarray], list[bool], Callable[[int], np.ndarray]]:
    """The reference loop: one warm-started fit per C in grid order, then a refit warm-started from the last."""
    loss, factor = _loss(d.task, cfg)
    n_classes = int(max(d.fit_y.max(), d.val_y.max())) + 1 if loss == "softmax" else None
    lr = LogisticRegression(warm_start=True)
    clf = OneVsRestClassifier(lr) if d.task == "multi-label" else lr

    def proba(x: np.ndarray) -> np.ndarray:
        p = clf.predict_proba(x)
        if n_classes is None or p.shape[1] == n_classes:
            return p
        full = np.zeros((len(x), n_classes))  # a class absent from the fitted rows: probability 0
        full[:, clf.classes_] = p
        return full

    val_proba, converged = [], []
    for C in cfg.C_grid:
        _sklearn_fit(clf, factor * C, d.fit_x, d.fit_y)
        val_proba.append(proba(d.val_x))
        estimators = clf.estimators_ if isinstance(clf, OneVsRestClassifier) else [clf]
        converged.append(all(int(e.n_iter_.max()) < e.max_iter for e in estimators))

    def test_proba(i: int) -> np.ndarray:
        x, y, x_test = d.refit if d.refit is not None else (d.fit_x, d.fit_y, d.test_x)
        _sklearn_fit(clf, factor * cfg.C_grid[i], x, y)
        return proba(x_test)

    return val_proba, converged, test_proba


def _replay(d: _Data, cfg: LinearConfig) -> tuple[list[np.ndarray], list[bool], Callable[[int], np.ndarray]]:
    """The reference loop's exact trajectory (`_replay.WarmLBFGS`), without scikit-learn's per-call overhead."""
    loss, factor = _loss(d.task, cfg)
    n_classes = int(max(d.fit_y.max(), d.val_y.max())) + 1 if loss == "softmax" else 1
    columns = d.fit_y.shape[1] if d.task == "multi-label" else 1

    def solvers() -> list[WarmLBFGS]:
        return [WarmLBFGS(loss, n_classes) for _ in range(columns)]

    def fit(models: list[WarmLBFGS], C: float, x: np.ndarray, y: np.ndarray) -> list[WarmLBFGS]:
        if d.task == "multi-label":  # OneVsRestClassifier clones its estimator: every label starts afresh
            models = solvers()
            return [m.fit(x, y[:, j], C) for j, m in enumerate(models)]
        return [models[0].fit(x, y, C)]

    def proba(models: list[WarmLBFGS], x: np.ndarray) -> np.ndarray:
        if loss == "softmax":  # every class's column, also for a class missing from the fitted rows
            return models[0].predict_proba(x, n_classes=n_classes)
        return _scores(d.task, np.concatenate([m.predict_proba(x) for m in models], axis=1))

    models = solvers()
    val_proba, converged = [], []
    for C in cfg.C_grid:
        models = fit(models, factor * C, d.fit_x, d.fit_y)
        val_proba.append(proba(models, d.val_x))
        converged.append(all(m.n_iter_ < m.max_iter for m in models))

    def test_proba(i: int) -> np.ndarray:
        x, y, x_test = d.refit if d.refit is not None else (d.fit_x, d.fit_y, d.test_x)
        return proba(fit(models, factor * cfg.C_grid[i], x, y), x_test)

    return val_proba, converged, test_proba


_SOLVERS = {"fast": _fast, "sklearn": _sklearn, "replay": _replay}


def _selection_score(select: str, task: str, y: np.ndarray, proba: np.ndarray) -> float:
    """Validation score for choosing C. Multi-label: the mean over the labels it is defined for, so a rare
    label absent from the (small) validation split does not stop the selection."""
    if task != "multi-label":
        return metric_value(select, task, y, proba)
    per_label = []
    for j in range(y.shape[1]):
        try:
            per_label.append(metric_value(select, "binary", y[:, j], proba[:, j]))
        except DataError:  # e.g. AUC of a label with no positive in the validation split
            continue
    if not per_label:
        raise DataError(f"The selection metric {select!r} is undefined for every label of the validation split; "
                        f"use a larger validation split or select='accuracy'.")
    return float(np.mean(per_label))


def _all_classes(task: str, proba: np.ndarray, test_y: np.ndarray, n_classes: int | None) -> np.ndarray:
    """`proba` with a zero column for every class after the last one the fitted rows had (single-label tasks)."""
    if task == "multi-label":
        return proba
    n = n_classes if n_classes is not None else max(proba.shape[1], int(np.max(test_y)) + 1)
    if n < proba.shape[1]:
        raise DataError(f"n_classes={n} is smaller than the {proba.shape[1]} classes of the fitted labels (train "
                        "and val). Leave n_classes out to count them from the labels.")
    return np.pad(proba, ((0, 0), (0, n - proba.shape[1])))


def linear_probe(train: Features, test: Features, *, preset: str = "default", val: Features | None = None,
                 task: str | None = None, metrics: Sequence[str] | None = None, select: str | None = None,
                 seed: int = 0, cfg: LinearConfig | None = None, n_classes: int | None = None,
                 **overrides: Any) -> ClassificationResult:
    """Fit logistic regression on `train` for every C, pick C on validation data, score `test`.

    Test data never reaches the choice of C. With a hold-out of train, the final model is refitted on all of
    train with the chosen C.

    Args:
        preset: ``"default"`` or ``"anton2022"`` (see `PRESETS` and the module docstring).
        val: the dataset's val split; used to choose C unless the config's ``val_source`` is ``"train"``.
        task: the dataset card's task (binary, multi-class, multi-label, ordinal); None infers it from train.y.
        metrics: metrics reported with bootstrap 95% CIs (None: accuracy, AUC [, QW-kappa]).
        select: the metric that chooses C (default: the first of `metrics`).
        seed: seeds the hold-out split and the bootstrap.
        cfg: a full LinearConfig instead of a preset.
        n_classes: probability columns for single-label tasks (None: the largest label of train, val and test,
            plus one). A class no training row has (a small label budget) gets probability 0.
        **overrides: LinearConfig fields, e.g. ``C_grid=(1.0,)``.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(120, 4)), np.arange(120) % 2
        >>> x[:, 0] += 2 * y
        >>> r = linear_probe(Features(x[:80], y[:80]), Features(x[80:], y[80:]), preset="anton2022", n_boot=0)
        >>> r.metrics["accuracy"] > 0.7, len(r.grid), r.config["preset"]
        (True, 45, 'anton2022')
    """
    cfg = resolve_config(preset, cfg, **overrides)
    task = task or infer_task(train.y)
    metrics = tuple(metrics or default_metrics(task))
    select = select or cfg.select or metrics[0]
    d = _prepare(task, train, test, val, cfg, seed)
    with threadpool_limits(cfg.n_threads) if cfg.n_threads is not None else contextlib.nullcontext():
        val_proba, converged, test_proba = _SOLVERS[cfg.solver](d, cfg)
        scores = [_selection_score(select, task, d.val_y, p) for p in val_proba]
        best = int(np.argmax(scores))  # the first of equal scores, as the reference's strict '>'
        final = _all_classes(task, test_proba(best), test.y, n_classes)
    grid = [{"C": C, select: s, "converged": c} for C, s, c in zip(cfg.C_grid, scores, converged, strict=True)]
    result = evaluate(task, test.y, final, metrics, n_boot=cfg.n_boot, seed=seed)
    return ClassificationResult(
        protocol="linear", metrics={k: v[0] for k, v in result.items()},
        ci={k: (v[1], v[2]) for k, v in result.items()}, chosen={"C": cfg.C_grid[best]}, grid=grid,
        n_train=train.n, n_test=test.n, seed=seed, config={**to_dict(cfg), "preset": preset, "n_classes": n_classes},
        y_true=test.y, y_score=final,
    )
