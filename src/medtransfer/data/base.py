"""DatasetCard, the ImageDataset interface every source implements, and the dataset registry."""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import Registry
from medtransfer.tasks import METRICS, SEGMENTATION_METRICS, TASKS, TaskType


@dataclass(frozen=True)
class DatasetCard:
    """What a dataset is: task, labels, metric, splits, licence. Declared once, read by every protocol.

    Attributes:
        name: registry name, lower-case with hyphens (``breastmnist-64``).
        task: ``binary``, ``multi-class``, ``multi-label`` or ``ordinal``.
        label_names: one name per class (per label for multi-label), in label-index order.
        dims: 2 for images stored (N, H, W, C), 3 for volumes stored (N, D, H, W, C).
        channels: channels as stored: 1 (grey) or 3 (RGB).
        image_size: side length as stored; None when the images differ in size.
        splits: the splits the dataset provides.
        metrics: metrics reported for it; ``default_metric`` is the headline one.
    """

    name: str
    task: TaskType
    label_names: tuple[str, ...]
    dims: int = 2
    channels: int = 1
    image_size: int | None = None
    splits: tuple[str, ...] = ("train", "val", "test")
    metrics: tuple[str, ...] = ("accuracy", "auc")
    default_metric: str = "accuracy"
    has_masks: bool = False
    license: str = ""
    citation: str = ""
    source: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"DatasetCard {self.name!r}"
        if self.task not in TASKS:
            raise ConfigError(f"The 'task' parameter of {where} must be one of {list(TASKS)}. Got {self.task!r}.")
        if self.dims not in (2, 3):
            raise ConfigError(f"The 'dims' parameter of {where} must be 2 or 3. Got {self.dims!r}.")
        if self.channels not in (1, 3):
            raise ConfigError(f"The 'channels' parameter of {where} must be 1 or 3. Got {self.channels!r}.")
        if len(self.label_names) < (1 if self.task == "multi-label" else 2):
            raise ConfigError(f"{where} needs at least two label names. Got {list(self.label_names)}.")
        allowed = SEGMENTATION_METRICS if self.task == "segmentation" else METRICS
        unknown = [m for m in self.metrics if m not in allowed]
        if unknown or self.default_metric not in self.metrics:
            raise ConfigError(f"{where}: metrics must be among {list(allowed)} and include default_metric "
                              f"{self.default_metric!r}. Got {list(self.metrics)}.")
        if self.task == "segmentation" and not self.has_masks:
            raise ConfigError(f"{where} is a segmentation dataset and must have has_masks=True.")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


class ImageDataset(abc.ABC):
    """One split of a dataset: labels in memory, images decoded on demand, a batch of indices at a time.

    Images are uint8, channels last: (B, H, W, C) in 2D, (B, D, H, W, C) in 3D. A source whose images differ
    in size returns a list of arrays instead of one array. Labels are (N,) int64, or (N, C) uint8 for
    multi-label tasks.
    """

    def __init__(self, card: DatasetCard, split: str, labels: np.ndarray) -> None:
        self.card = card
        self.split = split
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.card.name!r}, split={self.split!r}, n={len(self)})"

    @abc.abstractmethod
    def images(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Decode the images at `index` (1-D int array) as uint8, channels last."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the content of this split changes (keys the feature cache)."""

    def masks(self, index: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Segmentation masks at `index`, (B, H, W) or (B, D, H, W) integer labels (a list where sizes differ)."""
        raise DataError(f"Dataset {self.card.name!r} has no segmentation masks.")

    def fov(self, index: np.ndarray) -> np.ndarray | list[np.ndarray] | None:
        """Where the masks count, (B, H, W) bool (a field of view, e.g. DRIVE's), or None for everywhere."""
        return None

    def pairs(self, index: np.ndarray) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | list[np.ndarray]]:
        """Images and masks at `index`; a source that makes both in one pass (phantoms) overrides this."""
        return self.images(index), self.masks(index)


class ArrayDataset(ImageDataset):
    """A split held as in-memory (or memory-mapped) uint8 arrays."""

    def __init__(self, card: DatasetCard, split: str, images: np.ndarray, labels: np.ndarray, *,
                 fingerprint: str, masks: np.ndarray | None = None, fov: np.ndarray | None = None) -> None:
        if len(images) != len(labels):
            raise DataError(f"Dataset {card.name!r} split {split!r}: {len(images)} images but {len(labels)} labels.")
        super().__init__(card, split, labels)
        self._images = images
        self._masks, self._fov = masks, fov
        self._fingerprint = fingerprint

    def images(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self._images[index])

    def masks(self, index: np.ndarray) -> np.ndarray:
        if self._masks is None:
            return super().masks(index)
        return np.asarray(self._masks[index])

    def fov(self, index: np.ndarray) -> np.ndarray | None:
        return None if self._fov is None else np.asarray(self._fov[index])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint


def files_fingerprint(header: str, paths: Iterable[Path], extra: bytes = b"") -> str:
    """sha256 of `header`, each file's path, size and mtime (in order), and `extra`: a split of files changes
    its fingerprint (and so its feature-cache key) when any file is replaced, touched, added or removed."""
    h = hashlib.sha256(f"{header}\n".encode())
    for path in paths:
        stat = path.stat()
        h.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    h.update(extra)
    return h.hexdigest()


Loader = Callable[..., ImageDataset]


@dataclass(frozen=True)
class DatasetEntry:
    """A registry entry: the card and the function that loads a split, `loader(card, split, data_root, **opts)`.

    `check`, when given, validates loader options without loading anything (a loader taking ``**options``
    cannot be checked from its signature alone); it raises ConfigError.
    """

    card: DatasetCard
    loader: Loader
    check: Callable[[DatasetCard, dict[str, Any]], None] | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def default_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where dataset files live: `explicit` > $MEDTRANSFER_DATA > ~/.medmnist (the medmnist package's default)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("MEDTRANSFER_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.medmnist").expanduser()
