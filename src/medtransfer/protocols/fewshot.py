"""Few-shot classification of frozen features with class prototypes (ProtoNet, no training).

The protocol of Ericsson et al. (CVPR 2021) and Anton et al. (2022), PROTOCOLS.md §1.5: all images (the
caller concatenates train, val and test) are grouped per class. Each episode draws `n_way` random classes and
`n_support + n_query` random distinct images of each; the prototype of a class is the mean of its support
features (Snell et al., NeurIPS 2017), a query's logits are its negative squared Euclidean distances to the
prototypes, and its prediction their argmax. The score is the episode accuracy averaged over episodes, with the
reference's interval mean ± 1.96 · std / √episodes (np.std, ddof=0).

All episodes are drawn up front as one (E, n_way, n_support + n_query) index array and scored as batched
tensor operations, in chunks of episodes whose gathered features stay near `_MAX_BYTES`. The draws come from
a numpy Generator seeded with `seed`; they differ from the reference's ``random.sample`` / ``np.random``
stream, so single episodes differ while the distribution of the mean is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medtransfer.errors import DataError
from medtransfer.protocols._ties import first_min_torch
from medtransfer.protocols.base import ClassificationResult, Features, check_int, flatten_single

# Features gathered per chunk of episodes. Small enough to stay in the CPU cache between the gather and the
# matmul: 16 MiB (11 episodes of 5 x 35 x 2048 float32) ran 2x faster than 256 MiB chunks.
_MAX_BYTES = 16 * 2**20
_Z95 = 1.96  # the reference's normal quantile for the 95% interval


@dataclass(frozen=True)
class FewShotConfig:
    """Few-shot settings, as the registry reads them from a config file (the keyword arguments of `few_shot`).

    Attributes:
        n_way: classes per episode; the paper uses 2 for the binary datasets and 5 for EyePACS, ChestX, CIFAR10.
        n_support: support images per class (the "shot"); 20 in the paper's runs.
        n_query: query images per class; 15 as in CloserLookFewShot and ssl-transfer.
        episodes: episodes averaged; 600 (the reference's ``iter_num``) gives half-widths of 0.3-1 points.
    """

    n_way: int = 5
    n_support: int = 20
    n_query: int = 15
    episodes: int = 600


def _single_labels(y: np.ndarray) -> np.ndarray:
    y = flatten_single(y)
    if y.ndim != 1:
        raise DataError(f"few_shot needs one class label per image, y of shape (N,). Got y of shape {y.shape} "
                        "(multi-label targets): episodes are built from single-label classes; use knn or "
                        "linear for multi-label datasets.")
    return y


def _check_pool(classes: np.ndarray, counts: np.ndarray, n_way: int, n_support: int, n_query: int) -> None:
    """n_way must fit the classes; every class must hold n_support + n_query images."""
    check_int("few_shot", "n_way", n_way, 2, len(classes), high_name="n_classes",
                  note=f" The features hold n_classes = {len(classes)} classes.")
    need = n_support + n_query
    small = [(c.item(), int(n)) for c, n in zip(classes, counts, strict=True) if n < need]
    if small:
        (label, count), others = small[0], [str(c) for c, _ in small[1:]]
        more = f" So are classes {', '.join(others)}." if others else ""
        raise DataError(f"Class {label} has {count} images; {n_way}-way {n_support}-shot with {n_query} queries "
                        f"needs {need} per class.{more} Lower n_support or n_query, or leave the class out.")


def _distinct_subsets(sizes: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct integers in [0, sizes[p]) for every row p, in uniformly random order: (P, m).

    Floyd's algorithm (Bentley & Floyd, CACM 1987) draws a uniform m-subset of range(n) with m random numbers,
    whatever n: step j = n - m + i adds a uniform t in [0, j], or j itself if t is taken. A random permutation of
    each row then splits it uniformly into support and query.
    """
    out = np.empty((len(sizes), m), dtype=np.int64)
    for i in range(m):
        j = sizes - m + i  # (P,)
        t = rng.integers(0, j + 1)  # (P,) uniform in [0, j]
        taken = (out[:, :i] == t[:, None]).any(axis=1)  # (P,)
        out[:, i] = np.where(taken, j, t)
    order = np.argsort(rng.random(out.shape), axis=1)  # (P, m) a random permutation per row
    return np.take_along_axis(out, order, axis=1)


def episode_indices(y: np.ndarray, *, n_way: int = 5, n_support: int = 20, n_query: int = 15,
                    episodes: int = 600, seed: int = 0) -> np.ndarray:
    """Draw the images of every episode: (E, n_way, n_support + n_query) row indices into `y`.

    ``index[e, w]`` holds distinct images of one class, the same class for all of row ``w`` and a different
    class for every ``w`` of an episode; the first `n_support` are the support set, the rest the queries.

    Raises:
        ConfigError: for n_way outside [2, n_classes] or non-positive sizes.
        DataError: for multi-label `y`, or a class with fewer than n_support + n_query images.
    """
    y = _single_labels(y)
    for name, value in (("n_support", n_support), ("n_query", n_query), ("episodes", episodes)):
        check_int("few_shot", name, value, 1)
    classes, counts = np.unique(y, return_counts=True)  # (C,), (C,)
    _check_pool(classes, counts, n_way, n_support, n_query)
    members = np.argsort(np.searchsorted(classes, y), kind="stable")  # (N,) row indices grouped by class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (C,) first member of each class
    rng = np.random.default_rng(seed)
    way = np.argsort(rng.random((episodes, len(classes))), axis=1)[:, :n_way]  # (E, W) distinct classes
    local = _distinct_subsets(counts[way].ravel(), n_support + n_query, rng)  # (E * W, S + Q)
    return members[starts[way].reshape(-1, 1) + local].reshape(episodes, n_way, -1)


def _chunk_accuracies(x: torch.Tensor, x_sq: torch.Tensor, index: torch.Tensor, n_support: int) -> torch.Tensor:
    """Episode accuracies (e,) of one chunk of episodes `index` (e, W, S + Q); `x` (N, D) is float64, `x_sq`
    (N,) its squared row norms."""
    e, w, _ = index.shape
    support = index[:, :, :n_support].reshape(e * w, n_support)  # (e * W, S)
    proto = torch.nn.functional.embedding_bag(support, x, mode="mean").view(e, w, -1)  # (e, W, D)
    query = index[:, :, n_support:].reshape(e, -1)  # (e, W * Q), class-major
    q = x[query]  # (e, W * Q, D)
    q_sq, p_sq = x_sq[query][..., None], (proto * proto).sum(-1)[:, None, :]  # (e, W * Q, 1), (e, 1, W)
    dist = q_sq - 2 * torch.bmm(q, proto.transpose(1, 2)) + p_sq  # (e, W * Q, W) squared Euclidean distances
    # argmax of the logits -dist; prototypes equally far (within the expansion's rounding) go to the first class
    pred = first_min_torch(dist, q_sq + p_sq.max(-1, keepdim=True).values)  # (e, W * Q)
    truth = torch.arange(w).repeat_interleave(query.shape[1] // w)  # (W * Q,) query j is of class j // Q
    return (pred == truth).double().mean(1)


def episode_accuracies(x: np.ndarray, index: np.ndarray, n_support: int) -> np.ndarray:
    """Prototype-classifier accuracy of every episode: (E,).

    Args:
        x: (N, D) features, scored in float64 whatever their dtype. A query equally far from two prototypes
            (integer-valued features, duplicated images) is then a tie that float32 rounding would have decided
            one way on one machine and the other way on the next; here it goes to the first class everywhere.
        index: (E, W, S + Q) rows of `x` as drawn by `episode_indices`.
        n_support: S, the leading support images of every ``index[e, w]``.
    """
    xt = torch.tensor(np.asarray(x), dtype=torch.float64)  # (N, D), one conversion for all episodes
    index_t = torch.as_tensor(np.ascontiguousarray(index), dtype=torch.int64)  # (E, W, S + Q)
    per_episode = index_t[0].numel() * xt.shape[1] * xt.element_size() if len(index_t) else 1
    step = max(1, _MAX_BYTES // per_episode)
    x_sq = torch.linalg.vector_norm(xt, dim=1) ** 2  # (N,)
    chunks = [_chunk_accuracies(xt, x_sq, index_t[s:s + step], n_support) for s in range(0, len(index_t), step)]
    return torch.cat(chunks).numpy() if chunks else np.zeros(0)


def few_shot(features: Features, *, n_way: int = 5, n_support: int = 20, n_query: int = 15, episodes: int = 600,
             seed: int = 0) -> ClassificationResult:
    """Mean prototype-classifier accuracy over seeded random episodes, with the reference's 95% interval.

    Args:
        features: features and single labels of all images (train, val and test concatenated by the caller).
        n_way: classes per episode, in [2, n_classes].
        n_support: support images per class.
        n_query: query images per class.
        episodes: episodes averaged.
        seed: seed of the numpy Generator that draws the episodes.

    Returns:
        ``metrics["accuracy"]`` (a fraction), ``ci["accuracy"]`` = mean ± 1.96 · std / √episodes and the
        half-width in ``chosen["ci_halfwidth"]`` (print as 100·mean ± 100·half-width, e.g. "73.76 ± 0.66").
        ``n_test`` counts the scored queries, episodes · n_way · n_query.

    Examples:
        >>> x = np.repeat(np.arange(3.0), 4)[:, None] * 10  # three far-apart classes of four images
        >>> r = few_shot(Features(x, np.repeat(np.arange(3), 4)), n_way=2, n_support=2, n_query=2, episodes=5)
        >>> r.metrics["accuracy"], r.chosen["ci_halfwidth"]
        (1.0, 0.0)
    """
    index = episode_indices(features.y, n_way=n_way, n_support=n_support, n_query=n_query, episodes=episodes,
                            seed=seed)  # (E, W, S + Q)
    acc = episode_accuracies(features.x, index, n_support)  # (E,)
    mean, half = float(acc.mean()), float(_Z95 * acc.std() / np.sqrt(episodes))  # np.std: ddof=0, as the reference
    settings = {"n_way": n_way, "n_support": n_support, "n_query": n_query, "episodes": episodes}
    return ClassificationResult(
        protocol="fewshot", metrics={"accuracy": mean}, ci={"accuracy": (mean - half, mean + half)},
        chosen={**settings, "ci_halfwidth": half}, n_train=features.n, n_test=episodes * n_way * n_query,
        seed=seed, config=settings,
    )
