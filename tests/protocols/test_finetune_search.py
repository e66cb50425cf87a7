"""The finetuning hyper-parameter search: the reference's grid, selection on validation only."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer import data, models
from medtransfer.errors import ConfigError
from medtransfer.protocols.finetune_search import finetune_search, search_grid


def test_grid_matches_the_reference_pairs() -> None:
    # g=2: lr in (1e-1, 1e-4) descending, wd' in (0, 1e-6, 1e-3), weight decay = wd' / lr
    pairs = search_grid(2)
    expected = [(0.1, 0.0), (0.1, 1e-5), (0.1, 1e-2), (1e-4, 0.0), (1e-4, 1e-2), (1e-4, 10.0)]
    assert len(pairs) == 6 and np.allclose(pairs, expected)
    assert len(search_grid(4)) == 20  # ssl-transfer's grid
    with pytest.raises(ConfigError, match="'g' parameter of search_grid"):
        search_grid(0)


def test_search_picks_the_best_validation_pair() -> None:
    tr, te = (data.load("phantom-binary-32", s, n=n) for s, n in (("train", 80), ("test", 40)))
    result = finetune_search(models.create("test-cnn"), tr, None, te, g=1, steps=4, val_every=2, batch_size=16,
                             n_boot=10, progress=False)
    scores = [c["val_accuracy"] for c in result.grid]
    assert len(result.grid) == 2 and len(scores) == 2
    winner = result.grid[int(np.argmax(scores))]  # the first of any tie, as the search keeps
    assert (result.chosen["lr"], result.chosen["weight_decay"]) == (winner["lr"], winner["weight_decay"])
    with pytest.raises(ConfigError, match="chooses 'lr' and 'weight_decay' itself"):
        finetune_search(models.create("test-cnn"), tr, None, te, lr=0.1)
