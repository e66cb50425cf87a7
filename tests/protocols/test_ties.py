"""Tie-aware arg-max, top-k and grouping: hand-worked cases and a comparison with an exact sort."""

from __future__ import annotations

import numpy as np
import torch

from medtransfer.protocols._ties import (
    TIE,
    above_half,
    first_max,
    first_min_torch,
    group_heads,
    stable_topk,
    tie_groups,
)


def test_first_max_takes_the_first_of_values_rounding_apart() -> None:
    s = np.array([[0.3, 0.3 + 1e-16, 0.4 - 0.4], [0.2, 0.5, 0.5 - 1e-15], [0.1, 0.2, 0.2 + 1e-6]])
    np.testing.assert_array_equal(first_max(s), [0, 1, 2])  # 1e-6 is a real difference, 1e-15 is not
    # scale: distances of magnitude 1e6 carry rounding of ~1e-10, still a tie at TIE * 1e6
    np.testing.assert_array_equal(first_max(-np.array([[1e6 + 1e-10, 1e6]]), scale=1e6), [0])


def test_first_min_torch_equals_first_max_of_the_negation() -> None:
    v = torch.tensor([[3.0, 1.0 + 1e-16, 1.0], [2.0, 2.0 + 1e-3, 5.0]], dtype=torch.float64)
    np.testing.assert_array_equal(first_min_torch(v, torch.ones(2, 1, dtype=torch.float64)).numpy(), [1, 0])
    np.testing.assert_array_equal(first_min_torch(v, torch.ones(2, 1, dtype=torch.float64)).numpy(),
                                  first_max(-v.numpy()))


def test_above_half() -> None:
    np.testing.assert_array_equal(above_half(np.array([0.5, 0.5 + 1e-16, 0.5 + 1e-9, 0.49])),
                                  [False, False, True, False])


def test_tie_groups_and_heads() -> None:
    v = torch.tensor([0.9, 0.9 - TIE / 2, 0.8, 0.7, 0.7 - TIE / 4, 0.7 - TIE / 2], dtype=torch.float64)
    groups = tie_groups(v)
    np.testing.assert_array_equal(groups.numpy(), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(group_heads(v, groups).numpy(), [0.9, 0.9, 0.8, 0.7, 0.7, 0.7])


def test_stable_topk_equals_an_exact_two_key_sort(rng: np.random.Generator) -> None:
    # Values from a few exact levels, each perturbed by rounding-sized noise: the k best by (level, index).
    levels = rng.integers(0, 6, (50, 40)) / 7.0  # (n, M) many ties
    noisy = levels + rng.normal(size=levels.shape) * 1e-15
    index = torch.from_numpy(np.stack([rng.permutation(1000)[:40] for _ in range(50)]))  # (n, M) distinct
    values, picked = stable_topk(torch.from_numpy(noisy), index, 7)
    for row in range(50):
        expected = sorted(range(40), key=lambda j: (-levels[row, j], int(index[row, j])))[:7]
        np.testing.assert_array_equal(picked[row].numpy(), index[row, expected].numpy())
        np.testing.assert_allclose(values[row].numpy(), levels[row, expected], atol=1e-14)
    # smallest first with largest=False
    _, low = stable_topk(torch.from_numpy(noisy), index, 3, largest=False)
    expected = sorted(range(40), key=lambda j: (levels[0, j], int(index[0, j])))[:3]
    np.testing.assert_array_equal(low[0].numpy(), index[0, expected].numpy())
