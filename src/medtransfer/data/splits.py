"""Seeded, stratified label budgets: a fraction of the training labels, or N per class.

The subset depends only on the labels and the seed, so every model at a given seed sees the same images, and
budgets are nested: at one seed, the 1% subset lies inside the 10% subset, which lies inside the 25% one.
"""

from __future__ import annotations

import numpy as np

from medtransfer.errors import ConfigError, DataError


def _check(fraction: float | None, per_class: int | None) -> None:
    if (fraction is None) == (per_class is None):
        raise ConfigError("Give exactly one of 'fraction' (e.g. 0.1) or 'per_class' (e.g. 20) for a label budget.")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ConfigError(f"The 'fraction' parameter of label_subset must be a float in the range (0, 1]. "
                          f"Got {fraction!r} instead.")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ConfigError(f"The 'per_class' parameter of label_subset must be an int in the range [1, inf). "
                          f"Got {per_class!r} instead.")


def label_subset(labels: np.ndarray, *, fraction: float | None = None, per_class: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified subset of `labels`.

    With `fraction`, each class keeps ``max(1, round(fraction * n_class))`` samples; with `per_class`, exactly
    that many per class. Multi-label targets (N, C) have no single class to stratify by: they get a seeded random
    ``round(fraction * N)`` rows (at least 1), and `per_class` is refused.

    Examples:
        >>> label_subset(np.array([0, 0, 0, 0, 1, 1, 1, 1]), per_class=1, seed=0).shape
        (2,)
    """
    _check(fraction, per_class)
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        if per_class is not None:
            raise ConfigError("A per-class label budget is undefined for multi-label targets (a row holds several "
                              "classes); use a fraction instead.")
        return np.sort(rng.permutation(len(labels))[: max(1, int(round(fraction * len(labels))))])  # type: ignore[operator]
    strata = labels
    keep = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        order = members[rng.permutation(len(members))]  # one permutation per class: budgets are nested
        if per_class is not None and len(members) < per_class:
            raise DataError(f"Class {value} has {len(members)} training images; a budget of {per_class} per class "
                            f"needs at least that many. Use a smaller per_class or a fraction.")
        take = per_class if per_class is not None else max(1, int(round(fraction * len(members))))  # type: ignore[operator]
        keep.append(order[:take])
    return np.sort(np.concatenate(keep))


def budget_name(fraction: float | None, per_class: int | None) -> str:
    """A short label for reports: '10%' or '20/class'."""
    _check(fraction, per_class)
    return f"{per_class}/class" if per_class is not None else f"{100 * fraction:g}%"  # type: ignore[operator]
