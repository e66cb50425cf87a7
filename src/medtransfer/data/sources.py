"""Where a dataset name leads: a registered dataset, or a folder / CSV of the user's own images (and masks).

Above `base` (the card, the interface, the registry) and the user-data modules, so the arrows run one way:
``sources -> folder, segfolder -> base``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from medtransfer.data.base import DATASETS, DatasetCard, ImageDataset
from medtransfer.errors import ConfigError, DataError
from medtransfer.registry import did_you_mean


def is_user_path(name: str) -> bool:
    """True when `name` is not a registered dataset but a folder or CSV of the user's images."""
    return name not in DATASETS and (Path(name).expanduser().is_dir() or name.lower().endswith(".csv"))


def _user_loader(name: str) -> Any:
    """The loader of a user folder: image/mask pairs (`segfolder`) or images by class (`folder`)."""
    from medtransfer.data import segfolder

    if segfolder.is_segmentation_folder(name):
        return segfolder
    from medtransfer.data import folder

    return folder


def get_card(name: str) -> DatasetCard:
    """The card of the registered dataset `name`, or the card built from a user folder / CSV."""
    if is_user_path(name):
        return _user_loader(name).folder_card(name)
    return DATASETS.get(name).card


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise ConfigError when `options` are not loader options of the dataset `name` (nothing is read).

    Raises:
        UnknownNameError: `name` is neither registered nor a folder / CSV.
        ConfigError: an option the loader does not take, or a value its `check` refuses.
    """
    if is_user_path(name):
        params = inspect.signature(_user_loader(name).folder_dataset).parameters
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
    """Load one split of a registered dataset, or of a user folder / CSV.

    Examples:
        >>> ds = load("phantom-binary", "test")
        >>> ds.images(np.arange(4)).shape
        (4, 64, 64, 1)
    """
    if is_user_path(name):  # a folder or CSV of the user's images; its splits are known once it is read
        return _user_loader(name).folder_dataset(name, split, **options)  # type: ignore[no-any-return]
    entry = DATASETS.get(name)
    if split not in entry.card.splits:
        raise DataError(f"Dataset {name!r} has no split {split!r}; its splits are {list(entry.card.splits)}.")
    return entry.loader(entry.card, split, data_root=data_root, **options)
