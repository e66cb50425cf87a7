"""Anton et al.'s finetuning hyper-parameter search (PROTOCOLS.md §1.7), selected on validation only.

The grid: ``lr = logspace(-4, -1, g)`` (descending) and ``wd' in {0} U logspace(-6, -3, g)``, run as the pairs
``(lr, wd' / lr)`` — g=2 gives 6 runs, ssl-transfer's g=4 gives 20. Every candidate trains with validation (the
preset's hold-out, or the val split) and the pair with the best validation score wins; only the winner is scored
on test, so the test split never influences the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from medtransfer.data.base import ImageDataset
from medtransfer.errors import ConfigError
from medtransfer.protocols.base import ClassificationResult
from medtransfer.protocols.finetune import Finetuner


def search_grid(g: int) -> list[tuple[float, float]]:
    """The (lr, weight_decay) pairs of a grid of size `g`, in the reference's order.

    Examples:
        >>> [(round(lr, 6), round(wd, 6)) for lr, wd in search_grid(2)][:3]
        [(0.1, 0.0), (0.1, 1e-05), (0.1, 0.01)]
    """
    if isinstance(g, bool) or not isinstance(g, int) or g < 1:
        raise ConfigError(f"The 'g' parameter of search_grid must be an int in the range [1, inf). Got {g!r} instead.")
    lrs = np.logspace(-4, -1, g)[::-1]
    wds = np.concatenate([[0.0], np.logspace(-6, -3, g)])
    return [(float(lr), float(wd / lr)) for lr, wd in itertools.product(lrs, wds)]


def finetune_search(model: nn.Module, train: ImageDataset, val: ImageDataset | None, test: ImageDataset, *,
                    g: int = 2, preset: str = "anton2022", seed: int = 0, metrics: Sequence[str] | None = None,
                    **kwargs: Any) -> ClassificationResult:
    """Finetune once per (lr, weight_decay) pair of `search_grid(g)`, keep the best on validation, score it on test.

    `kwargs` are `Finetuner` arguments and `FinetuneConfig` overrides shared by every candidate; validation is
    switched on (``select_best=True``) since a search needs it.

    Returns:
        The winner's test metrics; `chosen` adds its ``lr`` and ``weight_decay``; `grid` holds every pair's best
        validation score.
    """
    if {"lr", "weight_decay"} & set(kwargs):
        raise ConfigError("finetune_search chooses 'lr' and 'weight_decay' itself; drop them from the options.")
    best: tuple[float, Finetuner] | None = None
    grid = []
    for lr, wd in search_grid(g):
        ft = Finetuner(preset, seed=seed, lr=lr, weight_decay=wd, select_best=True, **kwargs).fit(model, train, val)
        value = ft.chosen_[f"val_{ft.cfg.select_metric}"]
        grid.append({"lr": lr, "weight_decay": wd, f"val_{ft.cfg.select_metric}": value,
                     "best_step": ft.chosen_["best_step"]})
        score = -value if ft.cfg.select_metric == "loss" else value  # higher is better
        if best is None or score > best[0]:  # strict: a tie keeps the earlier (larger-lr) pair, in grid order
            best = (score, ft)
    assert best is not None, "search_grid(g >= 1) has at least two pairs"
    result = best[1].score(test, metrics)
    chosen = result.chosen | {"lr": best[1].cfg.lr, "weight_decay": best[1].cfg.weight_decay}
    return ClassificationResult(protocol="finetune", metrics=result.metrics, ci=result.ci, chosen=chosen, grid=grid,
                                n_train=result.n_train, n_test=result.n_test, seed=seed, config=result.config,
                                y_true=result.y_true, y_score=result.y_score)
