"""Is the difference between two models real? Paired tests on the same cells, and Holm's correction.

Two models are compared on the cells they share: same dataset, protocol, label fraction and seed. Where the store
kept both models' per-sample test predictions (on the same test images), the comparison is a **paired bootstrap
over test images**: every resample of the test set is scored for both models, and the difference of the metric,
averaged over the shared seeds, gives the interval and the p-value. Otherwise the unit is the seed: a **paired
t-test** over the seeds' values (Wilcoxon's signed-rank test beside it); with one seed and no predictions there
is no test. The p-values of every comparison on a page are corrected together with **Holm's step-down method**
(family-wise error rate), which is uniformly more powerful than Bonferroni and needs no independence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError
from medtransfer.protocols.metrics import metric_value, resampled_values
from medtransfer.report.tables import ANALYSIS_PROTOCOLS

BOOTSTRAP = "paired bootstrap over test images"
T_TEST = "paired t-test over seeds"
NO_TEST = "none (one seed, no per-sample predictions)"
CONSTANT = "none (every seed gives the same non-zero difference)"
CORRECTION = "Holm (step-down, family-wise error rate)"


@dataclass(frozen=True)
class Comparison:
    """Model `a` minus model `b` on the cells both have, for one (dataset, protocol, fraction, metric).

    Attributes:
        diff: mean over the shared seeds of value(a) - value(b).
        ci_low, ci_high: 95% interval of `diff` (bootstrap percentiles, or the t interval over seeds); None
            without a test.
        test: `BOOTSTRAP`, `T_TEST` or `NO_TEST`.
        p: two-sided p-value of the test; None without one.
        p_adjusted: `p` after Holm's correction over the family the comparison was reported in.
        wilcoxon_p: Wilcoxon signed-rank p-value over seeds (seed-level tests only; None when undefined).
        n: test images (bootstrap) or seeds (t-test) the test used.
    """

    dataset: str
    protocol: str
    fraction: float | None
    metric: str
    model_a: str
    model_b: str
    seeds: tuple[int, ...]
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float | None
    ci_high: float | None
    test: str
    p: float | None
    n: int
    p_adjusted: float | None = None
    wilcoxon_p: float | None = None


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the input order; None entries (no test) stay None and do not count.

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.

    Examples:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    tested = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    for p, _ in tested:
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ConfigError(f"holm() takes p-values in [0, 1] (or None). Got {p!r}.")
    m = len(tested)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):  # equal p-values: any order gives the same adjusted values
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_bootstrap(metric: str, task: str, y_true: np.ndarray, scores_a: Sequence[np.ndarray],
                     scores_b: Sequence[np.ndarray], *, n_boot: int = 2000, seed: int = 0
                     ) -> tuple[float, float, float, float]:
    """Difference of `metric` between two models' predictions on the same test samples, paired by resample.

    Args:
        metric, task: as in `medtransfer.protocols.metrics.metric_value`.
        y_true: the test labels both models were scored against.
        scores_a, scores_b: one probability array per shared seed, in the same seed order.
        n_boot: resamples of the test set (the same resamples for both models and every seed).
        seed: seed of the resampling.

    Returns:
        ``(diff, ci_low, ci_high, p)``: the mean over seeds of metric(a) - metric(b) on the full test set, the
        95% percentile interval of the resampled difference, and the two-sided bootstrap p-value
        ``min(1, 2 min(#(d <= 0) + 1, #(d >= 0) + 1) / (B + 1))`` over the B resamples where the metric is defined.
    """
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ConfigError(f"paired_bootstrap needs one score array per shared seed for both models; got "
                          f"{len(scores_a)} and {len(scores_b)}.")
    d_full, d_boot = 0.0, np.zeros(n_boot)
    for a, b in zip(scores_a, scores_b, strict=True):
        d_full += metric_value(metric, task, y_true, a) - metric_value(metric, task, y_true, b)
        d_boot += (resampled_values(metric, task, y_true, a, n_boot=n_boot, seed=seed)
                   - resampled_values(metric, task, y_true, b, n_boot=n_boot, seed=seed))
    k = len(scores_a)
    d_boot = d_boot[~np.isnan(d_boot)] / k  # resamples where the metric is undefined (no positive) are left out
    if d_boot.size == 0:
        raise ConfigError(f"The metric {metric!r} is undefined on every resample of these {len(y_true)} test "
                          "samples; no paired bootstrap is possible.")
    low, high = np.percentile(d_boot, [2.5, 97.5])
    tail = min(int((d_boot <= 0).sum()), int((d_boot >= 0).sum())) + 1
    return d_full / k, float(low), float(high), min(1.0, 2 * tail / (d_boot.size + 1))


def paired_seeds(values_a: Sequence[float], values_b: Sequence[float]) -> tuple[float, float | None, float | None,
                                                                                  float | None, float | None]:
    """Paired t-test (and Wilcoxon signed-rank) over seeds: ``(diff, ci_low, ci_high, p_t, p_wilcoxon)``.

    With fewer than two seeds there is no test (None for all but `diff`). Differences that are all equal make
    the t statistic undefined: p is 1 when they are all 0, None otherwise.
    """
    from scipy import stats

    d = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    diff = float(d.mean())
    if d.size < 2:
        return diff, None, None, None, None
    if np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else None
        return diff, diff, diff, p, p
    sem = float(d.std(ddof=1) / math.sqrt(d.size))
    half = float(stats.t.ppf(0.975, d.size - 1)) * sem
    p_t = float(stats.ttest_rel(values_a, values_b).pvalue)
    nonzero = d[d != 0]
    p_w = float(stats.wilcoxon(nonzero).pvalue) if nonzero.size else None
    return diff, diff - half, diff + half, p_t, p_w


Row = Mapping[str, Any]
PredictionsOf = Callable[[str], Any]  # cell_id -> Predictions | None (ResultStore.predictions)


ROW_KEY = ("model", "dataset", "protocol", "fraction", "seed", "metric", "split")


def latest_rows(rows: Iterable[Row]) -> tuple[list[Row], int]:
    """One row per (model, dataset, protocol, fraction, seed, metric, split): the latest stored (a store can hold
    cells of the same grid point run with other options or another medtransfer version), and how many older
    ones were left out. Rows come in store order (finish order), so the last one of a key is the latest."""
    latest: dict[tuple[Any, ...], Row] = {}
    rows = list(rows)
    for r in rows:
        latest[tuple(r[k] for k in ROW_KEY)] = r
    kept = {id(r) for r in latest.values()}
    return [r for r in rows if id(r) in kept], len(rows) - len(latest)


def headline_metrics(rows: Iterable[Row]) -> dict[str, str]:
    """Each dataset's headline metric: the first metric its protocol cells stored (the runner writes the dataset
    card's default metric first); the analyses' numbers are not candidates."""
    out: dict[str, str] = {}
    for r in rows:
        if r["split"] == "test" and r["protocol"] not in ANALYSIS_PROTOCOLS:
            out.setdefault(r["dataset"], r["metric"])
    return out


def _groups(rows: Iterable[Row], metrics: Mapping[str, str]) -> dict[tuple[str, str, float | None], dict[str, dict]]:
    """(dataset, protocol, fraction) -> model -> seed -> row, for each dataset's metric on the test split."""
    out: dict[tuple[str, str, float | None], dict[str, dict]] = {}
    for r in rows:
        if r["split"] == "test" and r["metric"] == metrics.get(r["dataset"]):
            key = (r["dataset"], r["protocol"], r["fraction"])
            out.setdefault(key, {}).setdefault(r["model"], {})[int(r["seed"])] = r
    return out


def _same_test_images(preds: list[Any]) -> bool:
    first = preds[0]
    return all(p is not None and p.n == first.n and p.task == first.task and np.array_equal(p.y_true, first.y_true)
               for p in preds)


def compare(rows: Iterable[Row], predictions: PredictionsOf | None = None, *, metrics: Mapping[str, str] | None = None,
            n_boot: int = 2000, seed: int = 0) -> list[Comparison]:
    """Every pair of models on the cells they share, Holm-corrected together.

    Args:
        rows: store result rows (`ResultStore.results()`).
        predictions: cell_id -> the cell's stored test predictions or None (`ResultStore.predictions`); without
            it every comparison is over seeds.
        metrics: dataset -> metric to compare on (default: each dataset's headline metric).
        n_boot: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        Comparisons ordered by (dataset, protocol, labels descending, model a, model b), a before b by name;
        of rows of the same grid point, the latest stored (`latest_rows`).
    """
    rows, _ = latest_rows(rows)
    metrics = dict(metrics or headline_metrics(rows))
    found: list[Comparison] = []
    for (dataset, protocol, fraction), by_model in _groups(rows, metrics).items():
        for a, b in itertools.combinations(sorted(by_model), 2):  # a before b by name: the sign is stable
            seeds = tuple(sorted(set(by_model[a]) & set(by_model[b])))
            if seeds:
                found.append(_compare_pair(dataset, protocol, fraction, metrics[dataset], a, b,
                                           [by_model[a][s] for s in seeds], [by_model[b][s] for s in seeds],
                                           seeds, predictions, n_boot=n_boot, seed=seed))
    adjusted = holm([c.p for c in found])
    found = [replace(c, p_adjusted=p) for c, p in zip(found, adjusted, strict=True)]
    return sorted(found, key=lambda c: (c.dataset, c.protocol, -(c.fraction or 1.0), c.model_a, c.model_b))


def _compare_pair(dataset: str, protocol: str, fraction: float | None, metric: str, a: str, b: str,
                  rows_a: list[Row], rows_b: list[Row], seeds: tuple[int, ...], predictions: PredictionsOf | None,
                  *, n_boot: int, seed: int) -> Comparison:
    values_a, values_b = [r["value"] for r in rows_a], [r["value"] for r in rows_b]
    head: dict[str, Any] = dict(dataset=dataset, protocol=protocol, fraction=fraction, metric=metric, model_a=a,
                                model_b=b, seeds=seeds, mean_a=float(np.mean(values_a)),
                                mean_b=float(np.mean(values_b)))
    preds = [predictions(r["cell_id"]) for r in (*rows_a, *rows_b)] if predictions is not None else []
    if preds and _same_test_images(preds):
        k = len(seeds)
        diff, boot_low, boot_high, p = paired_bootstrap(metric, preds[0].task, preds[0].y_true,
                                              [p.y_score for p in preds[:k]], [p.y_score for p in preds[k:]],
                                              n_boot=n_boot, seed=seed)
        return Comparison(**head, diff=diff, ci_low=boot_low, ci_high=boot_high, test=BOOTSTRAP, p=p,
                          n=preds[0].n)
    diff, low, high, p_t, p_w = paired_seeds(values_a, values_b)
    if len(seeds) < 2:
        return Comparison(**head, diff=diff, ci_low=None, ci_high=None, test=NO_TEST, p=None, n=len(seeds))
    if p_t is None:  # the same non-zero difference on every seed: the t statistic is undefined
        return Comparison(**head, diff=diff, ci_low=low, ci_high=high, test=CONSTANT, p=None, n=len(seeds))
    return Comparison(**head, diff=diff, ci_low=low, ci_high=high, test=T_TEST, p=p_t, n=len(seeds), wilcoxon_p=p_w)
