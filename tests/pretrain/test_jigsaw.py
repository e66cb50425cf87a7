"""Jigsaw: the 100 permutations are distinct and far apart; a permutation gets its index; the loss falls."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch

from medtransfer.errors import ConfigError
from medtransfer.pretrain.jigsaw import permutation_index, permutations, shuffle_patches


@pytest.mark.parametrize("n", [9, 27])
def test_one_hundred_distinct_permutations_far_apart(n: int) -> None:
    table = permutations(n)
    assert table.shape == (100, n)
    assert all(sorted(row) == list(range(n)) for row in table.tolist())
    dists = [int((a != b).sum()) for a, b in itertools.combinations(table, 2)]
    assert min(dists) >= (6 if n == 9 else 20)  # greedy max-Hamming: no two orders are close
    assert np.array_equal(permutations(n), table)  # fixed by its seed: the same classes in every run


def test_greedy_choice_beats_random_permutations() -> None:
    rng = np.random.default_rng(1)
    rand = np.stack([rng.permutation(9) for _ in range(100)])
    min_random = min(int((a != b).sum()) for a, b in itertools.combinations(rand, 2))
    min_chosen = min(int((a != b).sum()) for a, b in itertools.combinations(permutations(9), 2))
    assert min_chosen > min_random


def test_a_permutation_gets_its_index_and_shuffles_patches_by_it() -> None:
    table = permutations(9)
    for i in (0, 17, 99):
        assert permutation_index(table[i], table) == i
    patches = torch.arange(9.0).view(1, 9, 1).repeat(2, 1, 1)  # patch p holds the value p
    out = shuffle_patches(patches, torch.tensor([17, 99]), torch.from_numpy(table))
    assert out[0, :, 0].long().tolist() == table[17].tolist()
    assert permutation_index(out[1, :, 0].long().numpy(), table) == 99
    with pytest.raises(ConfigError, match="not in the jigsaw permutation set"):
        permutation_index([8, 7, 6, 5, 4, 3, 2, 0, 1], table[:1])


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_falls_on_a_fixed_batch(dims: int, build_method: Callable, loss_drop: Callable,
                                     images2d: torch.Tensor, volumes3d: torch.Tensor) -> None:
    first, last = loss_drop(build_method("jigsaw", dims), images2d if dims == 2 else volumes3d)
    assert last < first
