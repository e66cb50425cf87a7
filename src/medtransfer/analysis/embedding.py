"""2-D embeddings of cached features: PCA and t-SNE (scikit-learn), UMAP when `umap-learn` is installed."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError, DataError

METHODS = ("pca", "tsne", "umap")


@dataclass(frozen=True)
class Embedding:
    """Coordinates (N, 2) of N feature vectors, their labels, and how they were computed."""

    coords: np.ndarray
    labels: np.ndarray
    method: str
    settings: dict[str, Any]


def _fixed_signs(coords: np.ndarray) -> np.ndarray:
    """Each axis flipped so its largest-magnitude coordinate is positive (PCA's sign is arbitrary)."""
    idx = np.abs(coords).argmax(axis=0)
    signs = np.sign(coords[idx, np.arange(coords.shape[1])])
    return coords * np.where(signs == 0, 1, signs)


def embed(features: np.ndarray, labels: np.ndarray | None = None, *, method: str = "pca", seed: int = 0,
          perplexity: float = 30.0, standardize: bool = True) -> Embedding:
    """Embed features (N, D) in 2-D. Features are standardised per dimension first (unless `standardize` is off);
    t-SNE's perplexity is capped at (N - 1) / 3 so small sets work; UMAP uses 15 neighbours (capped at N - 1)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise DataError(f"An embedding needs features (N, D) of at least 3 images; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise DataError("The features hold NaN or inf values; an embedding of them would be meaningless. Check the "
                        "model's weights and inputs.")
    if method not in METHODS:
        raise ConfigError(f"Unknown embedding method {method!r}; choose one of {list(METHODS)}.")
    y = np.zeros(len(x), dtype=np.int64) if labels is None else np.asarray(labels)
    if len(y) != len(x):
        raise DataError(f"{len(y)} labels for {len(x)} feature rows; pass one label per row.")
    if standardize:
        sd = x.std(axis=0)
        constant = sd <= 1e-9 * np.maximum(np.abs(x).max(axis=0), 1e-300)  # rounding noise, not signal
        x = np.where(constant, 0.0, (x - x.mean(axis=0)) / np.where(constant, 1.0, sd))
    settings: dict[str, Any] = {"seed": seed, "standardize": standardize}
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, svd_solver="full")
        coords = _fixed_signs(pca.fit_transform(x))
        settings["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
    elif method == "tsne":
        from sklearn.manifold import TSNE

        p = min(perplexity, (len(x) - 1) / 3)
        coords = TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(x)
        settings["perplexity"] = float(p)
    else:
        if importlib.util.find_spec("umap") is None:
            raise ConfigError("UMAP needs the umap-learn package: pip install 'medtransfer[umap]' (or "
                              "umap-learn); PCA and t-SNE need nothing more.")
        import umap

        k = min(15, len(x) - 1)
        coords = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed).fit_transform(x)
        settings["n_neighbors"] = k
    return Embedding(np.asarray(coords, dtype=np.float64), y, method, settings)
