from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medtransfer.analysis import embedding as emb
from medtransfer.errors import ConfigError, DataError


def test_pca_equals_the_svd_by_hand(rng: np.random.Generator) -> None:
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 1, 1, 1, 1])
    e = emb.embed(x, method="pca", standardize=False)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = emb._fixed_signs(centred @ vt[:2].T)
    np.testing.assert_allclose(e.coords, expected, atol=1e-10)
    assert e.settings["explained_variance_ratio"][0] > e.settings["explained_variance_ratio"][1]


def test_tsne_separates_two_clusters_and_is_seeded(rng: np.random.Generator) -> None:
    x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(8, 1, (20, 8))])
    y = np.repeat([0, 1], 20)
    a = emb.embed(x, y, method="tsne", seed=1)
    b = emb.embed(x, y, method="tsne", seed=1)
    np.testing.assert_allclose(a.coords, b.coords)
    d = np.linalg.norm(a.coords[:, None] - a.coords[None], axis=-1) + np.diag(np.full(40, np.inf))
    assert np.all(y[d.argmin(axis=1)] == y)  # every point's nearest neighbour in the map is of its cluster
    assert emb.embed(x[:7], method="tsne").settings["perplexity"] == 2.0  # capped at (N - 1) / 3


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn is installed")
def test_umap_without_the_extra_says_how_to_get_it(rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="umap-learn"):
        emb.embed(rng.normal(size=(10, 3)), method="umap")


@pytest.mark.skipif(importlib.util.find_spec("umap") is None, reason="umap-learn (the umap extra) is not installed")
def test_umap_when_installed(rng: np.random.Generator) -> None:
    e = emb.embed(rng.normal(size=(30, 4)), method="umap")
    assert e.coords.shape == (30, 2)


def test_bad_input_is_named(rng: np.random.Generator) -> None:
    with pytest.raises(DataError, match="at least 3 images"):
        emb.embed(np.ones((2, 4)))
    with pytest.raises(DataError, match="NaN"):
        emb.embed(np.full((5, 2), np.nan))
    with pytest.raises(ConfigError, match="Unknown embedding method"):
        emb.embed(rng.normal(size=(5, 2)), method="mds")
    with pytest.raises(DataError, match="one label per row"):
        emb.embed(rng.normal(size=(5, 2)), np.zeros(4))
