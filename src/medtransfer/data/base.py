"""DatasetCard, the ImageDataset interface every source implements, and the dataset registry."""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import Registry, did_you_mean
from medtransfer.tasks import METRICS, TASKS, TaskType


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
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or self.default_metric not in self.metrics:
            raise ConfigError(f"{where}: metrics must be among {list(METRICS)} and include default_metric "
                              f"{self.default_metric!r}. Got {list(self.metrics)}.")

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

    def masks(self, index: np.ndarray) -> np.ndarray:
        """Segmentation masks at `index`, (B, H, W) or (B, D, H, W) integer labels."""
        raise DataError(f"Dataset {self.card.name!r} has no segmentation masks.")


class ArrayDataset(ImageDataset):
    """A split held as in-memory (or memory-mapped) uint8 arrays."""

    def __init__(self, card: DatasetCard, split: str, images: np.ndarray, labels: np.ndarray, *,
                 fingerprint: str, masks: np.ndarray | None = None) -> None:
        if len(images) != len(labels):
            raise DataError(f"Dataset {card.name!r} split {split!r}: {len(images)} images but {len(labels)} labels.")
        super().__init__(card, split, labels)
        self._images = images
        self._masks = masks
        self._fingerprint = fingerprint

    def images(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self._images[index])

    def masks(self, index: np.ndarray) -> np.ndarray:
        if self._masks is None:
            return super().masks(index)
        return np.asarray(self._masks[index])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint


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


def is_user_path(name: str) -> bool:
    """True when `name` is not a registered dataset but a folder or CSV of the user's images."""
    return name not in DATASETS and (Path(name).expanduser().is_dir() or name.lower().endswith(".csv"))


def get_card(name: str) -> DatasetCard:
    """The card of the registered dataset `name`, or the card built from a user folder / CSV."""
    if is_user_path(name):
        from medtransfer.data.folder import folder_card

        return folder_card(name)
    return DATASETS.get(name).card


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise ConfigError when `options` are not loader options of the dataset `name` (nothing is read).

    Raises:
        UnknownNameError: `name` is neither registered nor a folder / CSV.
        ConfigError: an option the loader does not take, or a value its `check` refuses.
    """
    if is_user_path(name):
        from medtransfer.data.folder import folder_dataset as loader

        params = inspect.signature(loader).parameters
    else:
        entry = DATASETS.get(name)
        if entry.check is not None:
            entry.check(entry.card, dict(options))
            return
        params = inspect.signature(entry.loader).parameters
    allowed = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY and p != "data_root"]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ConfigError(f"Dataset {name!r} takes the options {allowed}; got {unknown}."
                          f"{did_you_mean(unknown[0], allowed)}")


def load(name: str, split: str = "train", *, data_root: str | os.PathLike[str] | None = None,
         **options: Any) -> ImageDataset:
    """Load one split of a registered dataset.

    Examples:
        >>> ds = load("phantom-binary", "test")
        >>> ds.images(np.arange(4)).shape
        (4, 64, 64, 1)
    """
    if is_user_path(name):  # a folder or CSV of the user's images; its splits are known once it is read
        from medtransfer.data.folder import folder_dataset

        return folder_dataset(name, split, **options)
    entry = DATASETS.get(name)
    if split not in entry.card.splits:
        raise DataError(f"Dataset {name!r} has no split {split!r}; its splits are {list(entry.card.splits)}.")
    return entry.loader(entry.card, split, data_root=data_root, **options)
