"""Procedural phantoms: seeded 2D/3D medical-like images with masks, the default data that needs no network.

A body ellipse (ellipsoid in 3D) holds three textured organs (left, right, central), Shepp–Logan style; one
organ may hold a small lesion brighter or darker than itself. Pose, size, intensity, bias field and noise vary
per image, so a good representation must find the lesion through them. Image ``i`` depends only on
``(seed, task, split, i)``: any subset of a split renders to exactly the matching rows of the full split.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from medtransfer.config import config_hash, from_dict, to_dict
from medtransfer.data._phantom_config import PhantomConfig
from medtransfer.data._phantom_render import (
    N_LABEL_UNIFORM,
    N_NORMAL,
    N_UNIFORM,
    TEXTURE_KNOTS,
    build_scene,
    lesion_labels,
    render,
)
from medtransfer.data.base import DATASETS, DatasetCard, DatasetEntry, ImageDataset
from medtransfer.data.segmentation import segmentation_card
from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import did_you_mean

GENERATOR_VERSION = 1  # bump whenever the pixels that (cfg, task, split, seed, i) render to change
MASK_LABELS = ("background", "body", "left", "right", "central", "lesion")  # mask values 0..5
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# How a card declares paired views (multi-view invariance): loading with the option view=1 gives row i's second view.
VIEW_PAIRS = "option view=1: the same scene under another noise draw"
DEFAULT_N = {2: {"train": 2000, "val": 500, "test": 1000}, 3: {"train": 400, "val": 100, "test": 200}}
# task -> (card task type, label names, what the label means). A task's position is part of every image's
# random key, so tasks never share an image: append new tasks at the end.
TASKS: dict[str, tuple[Literal["binary", "multi-class", "ordinal"], tuple[str, ...], str]] = {
    "binary": ("binary", ("no-lesion", "lesion"), "label 1 when one organ holds a lesion (50%)"),
    "organ": ("multi-class", ("left", "right", "central"), "every image has a lesion; the label is the organ "
              "holding it, told apart by intensity and shape (not position: images rotate)"),
    "grade": ("ordinal", ("tiny", "small", "medium", "large"),
              "every image has a lesion; the label is its radius relative to its organ, in 4 bins"),
}

_CHUNK_PIXELS = 1 << 18  # pixels rendered together: 1 MB float32 buffers stay in cache (best of 2^16..2^19)
def _check_args(index: Any, task: str, split: str, seed: int) -> np.ndarray:
    """`index` as a 1-D int64 array; raise naming the bad argument of `generate` or `draw_labels`."""
    if task not in TASKS:
        raise ConfigError(f"Unknown phantom task {task!r}; choose one of {list(TASKS)}."
                          f"{did_you_mean(task, list(TASKS))}")
    if split not in SPLIT_IDS:
        raise ConfigError(f"Unknown phantom split {split!r}; choose one of {list(SPLIT_IDS)}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"The phantom seed must be a non-negative int. Got {seed!r} instead.")
    arr = np.asarray(index)
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0)):
        raise DataError(f"Phantom indices must be a 1-D array of non-negative ints (e.g. np.arange(8)). "
                        f"Got dtype {arr.dtype}, shape {arr.shape} instead.")
    return arr.astype(np.int64)


def _key(task: str, split: str, seed: int) -> list[int]:
    return [int(seed), list(TASKS).index(task), SPLIT_IDS[split]]


def _rngs(index: np.ndarray, task: str, split: str, seed: int) -> Iterator[np.random.Generator]:
    """One generator per image, keyed by (seed, task, split, i) alone: the root of per-index determinism."""
    key = _key(task, split, seed)
    return (np.random.default_rng([*key, int(i)]) for i in index)


def draw_labels(index: Any, *, task: str, split: str, seed: int) -> np.ndarray:
    """Labels (B,) int64 of the images at `index`, without rendering (labels do not depend on the config)."""
    index = _check_args(index, task, split, seed)
    u = np.zeros((len(index), N_UNIFORM))
    for b, rng in enumerate(_rngs(index, task, split, seed)):
        u[b, :N_LABEL_UNIFORM] = rng.random(N_LABEL_UNIFORM)  # the first draws of the full stream
    return lesion_labels(u, task)[3]


def _draws(index: np.ndarray, cfg: PhantomConfig, task: str, split: str, seed: int, view: int = 0
           ) -> tuple[np.ndarray, ...]:
    """Uniforms (B, 50), normals (B, 7), texture knots (B, K, ..) and unit noise (B, S**d) of each image; `view` > 0
    draws the noise from a stream of its own (the same scene under another noise draw)."""
    n = len(index)
    u, g = np.empty((n, N_UNIFORM)), np.empty((n, N_NORMAL))
    texture = np.empty((n,) + (TEXTURE_KNOTS,) * cfg.dims)
    noise = np.empty((n, cfg.size ** cfg.dims), dtype=np.float32)
    for b, rng in enumerate(_rngs(index, task, split, seed)):  # a loop over images, never over pixels
        rng.random(out=u[b])  # noise comes last: image i has the same anatomy at every size
        rng.standard_normal(out=g[b])
        rng.standard_normal(out=texture[b])
        noise_rng = rng if view == 0 else np.random.default_rng([*_key(task, split, seed), int(index[b]), 1 << 20,
                                                                  view])
        noise_rng.standard_normal(out=noise[b], dtype=np.float32)
    return u, g, texture, noise


def generate(index: Any, cfg: PhantomConfig, *, task: str, split: str, seed: int, view: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the phantoms at `index` (1-D non-negative ints), vectorised over the batch.

    Image i depends only on (seed, task, split, i): ``generate([5, 3], ...)`` equals rows 5 and 3 of
    ``generate(range(10), ...)``, and splits and tasks never share an image. `task` is a key of `TASKS`,
    `split` one of train/val/test, `seed` a non-negative int. `view` > 0 renders the same scenes (anatomy, lesion,
    pose, intensities: equal masks and labels) under another noise draw, a second view for multi-view invariance.

    Returns:
        images (B, H, W, 1) or (B, D, H, W, 1) uint8; masks (B, H, W) or (B, D, H, W) uint8 with the values of
        `MASK_LABELS`; labels (B,) int64.

    Examples:
        >>> images, masks, labels = generate([0, 1, 2], PhantomConfig(), task="binary", split="val", seed=0)
        >>> images.shape, masks.shape, labels.shape
        ((3, 64, 64, 1), (3, 64, 64), (3,))
    """
    index = _check_args(index, task, split, seed)
    n, spatial, step = len(index), (cfg.size,) * cfg.dims, max(1, _CHUNK_PIXELS // cfg.size ** cfg.dims)
    images, masks = np.empty((n, *spatial, 1), np.uint8), np.empty((n, *spatial), np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for lo in range(0, n, step):
        u, g, texture, noise = _draws(index[lo:lo + step], cfg, task, split, seed, view)
        present, host, _, labels[lo:lo + step] = lesion_labels(u, task)
        scene = build_scene(u, g, cfg, present, host)
        images[lo:lo + step, ..., 0], masks[lo:lo + step] = render(scene, texture, noise, cfg)
    return images, masks, labels


class PhantomDataset(ImageDataset):
    """One split of a phantom task: labels drawn at construction (cheap), images and masks rendered when read,
    so a 100k-image split costs no memory until it is read. Built by `load_phantom` through the registry."""

    def __init__(self, card: DatasetCard, split: str, *, cfg: PhantomConfig, task: str, n: int,
                 seed: int = 0, view: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"The 'n' option of dataset {card.name!r} must be a positive int. "
                              f"Got {n!r} instead.")
        super().__init__(card, split, draw_labels(np.arange(n), task=task, split=split, seed=seed))
        self.cfg, self.task, self.seed, self.view = cfg, task, int(seed), int(view)

    def render(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        """Images and masks at `index` in one pass (`images` then `masks` would render twice)."""
        index = np.asarray(index)
        if index.size and np.max(index) >= len(self):
            raise DataError(f"Index {int(np.max(index))} is out of range for {self!r}; use indices in "
                            f"[0, {len(self)}).")
        images, masks, _ = generate(index, self.cfg, task=self.task, split=self.split, seed=self.seed,
                                    view=self.view)
        return images, masks

    def images(self, index: np.ndarray) -> np.ndarray:
        return self.render(index)[0]

    def masks(self, index: np.ndarray) -> np.ndarray:
        return self.render(index)[1]

    def pairs(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.render(index)

    @property
    def fingerprint(self) -> str:
        return "phantom-" + config_hash({"cfg": to_dict(self.cfg), "task": self.task, "split": self.split,
                                         "seed": self.seed, "n": len(self), "version": GENERATOR_VERSION,
                                         **({"view": self.view} if self.view else {})})


# Segmentation targets from the rendered masks (0 background, 1 body, 2 left, 3 right, 4 central organ, 5 lesion)
SEG_TARGETS = {"organs": ("background", "left organ", "right organ", "central organ"),
               "lesion": ("background", "lesion")}


class SegmentationPhantoms(PhantomDataset):
    """Phantoms of the 'organ' task (a lesion in every image, in one of the organs) with segmentation targets:
    ``organs`` (the three organs, a lesion counted as part of its host) or ``lesion`` (the lesion alone)."""

    def __init__(self, card: DatasetCard, split: str, *, target: str, **kwargs: Any) -> None:
        super().__init__(card, split, task="organ", **kwargs)
        self.target = target

    def render(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        images, masks = super().render(index)
        if self.target == "lesion":
            return images, (masks == 5).astype(np.int64)
        host = self.labels[np.asarray(index)].reshape((-1,) + (1,) * (masks.ndim - 1))  # 0 left, 1 right, 2 central
        organs = np.where(masks >= 2, masks.astype(np.int64) - 1, 0)  # 2, 3, 4 -> 1, 2, 3
        return images, np.where(masks == 5, host + 1, organs)


def load_phantom(card: DatasetCard, split: str, *, data_root: Any = None, n: int | None = None, seed: int = 0,
                 view: int = 0, **cfg_overrides: Any) -> PhantomDataset:
    """The loader of every phantom entry; `cfg_overrides` are PhantomConfig fields (``lesion_contrast=0.1``);
    ``view=1`` (2, ...) gives the same scenes under another noise draw (multi-view invariance).

    `data_root` is ignored: phantoms are generated, nothing is read from disk. `n` defaults to `DEFAULT_N`.
    """
    del data_root
    n = DEFAULT_N[card.dims][split] if n is None else n
    if card.task == "segmentation":
        return SegmentationPhantoms(card, split, cfg=_config(card, cfg_overrides), target=card.extra["target"], n=n,
                                    seed=seed, view=view)
    return PhantomDataset(card, split, cfg=_config(card, cfg_overrides), task=card.extra["task"], n=n, seed=seed,
                          view=view)


def _config(card: DatasetCard, overrides: dict[str, Any]) -> PhantomConfig:
    for key in ("dims", "size"):
        if key in overrides:
            raise ConfigError(f"The {key!r} of dataset {card.name!r} is fixed by its name; load a name of "
                              f"another size instead (e.g. 'phantom-binary-128', 'phantom3d-binary-64').")
    return from_dict(PhantomConfig, {"dims": card.dims, "size": card.image_size, **overrides},
                     where=f"options of dataset {card.name!r}")


def check_phantom_options(card: DatasetCard, options: dict[str, Any]) -> None:
    """What `load_phantom` would refuse in `options`, found without rendering anything."""
    for key in ("n", "seed", "view"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (key == "n")):
            raise ConfigError(f"The {key!r} option of dataset {card.name!r} must be an int in the range "
                              f"[{int(key == 'n')}, inf). Got {value!r} instead.")
    _config(card, {k: v for k, v in options.items() if k not in ("n", "seed", "view", "data_root")})


def _register() -> None:
    """Register phantom-<task>[-<size>] (2D, 64 px default) and phantom3d-<task>[-<size>] (3D, 32 default)."""
    for task, (prefix, dims, sizes, default) in itertools.product(
            TASKS, (("phantom", 2, (28, 32, 64, 128), 64), ("phantom3d", 3, (28, 32, 64), 32))):
        task_type, label_names, meaning = TASKS[task]
        for name, size in ((f"{prefix}-{task}", default), *((f"{prefix}-{task}-{s}", s) for s in sizes)):
            card = DatasetCard(
                name=name, task=task_type, label_names=label_names, dims=dims, channels=1, image_size=size,
                metrics=("accuracy", "auc", "qw_kappa") if task == "grade" else ("accuracy", "auc"),
                default_metric="accuracy", has_masks=True, license="CC0-1.0 (generated)",
                source="generated by medtransfer",
                extra={"task": task, "version": GENERATOR_VERSION, "view_pairs": VIEW_PAIRS},
                description=f"Procedural {dims}D phantoms ({size} px): a body holding three organs under "
                            f"random pose, size, intensity, bias field and noise; {meaning}. Masks: "
                            f"0 background, 1 body, 2 left, 3 right, 4 central organ, 5 lesion.")
            DATASETS.add(name, DatasetEntry(card, load_phantom, check_phantom_options))
    for target, (prefix, dims, sizes, default) in itertools.product(
            SEG_TARGETS, (("phantom-seg", 2, (28, 32, 64, 128), 64), ("phantom3d-seg", 3, (28, 32, 64), 32))):
        for name, size in ((f"{prefix}-{target}", default), *((f"{prefix}-{target}-{s}", s) for s in sizes)):
            what = "the three organs" if target == "organs" else "the lesion"
            card = segmentation_card(
                name, SEG_TARGETS[target], channels=1, image_size=size, dims=dims, license="CC0-1.0 (generated)",
                source="generated by medtransfer",
                extra={"target": target, "version": GENERATOR_VERSION, "view_pairs": VIEW_PAIRS},
                description=f"Procedural {dims}D phantoms ({size} px) of the 'organ' task, a lesion in every "
                            f"image; the mask segments {what} ({', '.join(SEG_TARGETS[target])}).")
            DATASETS.add(name, DatasetEntry(card, load_phantom, check_phantom_options))


_register()
