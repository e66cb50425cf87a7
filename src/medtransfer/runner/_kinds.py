"""Which protocols fit which datasets: segment needs masks, the other protocols class labels.

Below `spec` (grid expansion and checks) and `trained` (one trained cell), which both ask.
"""

from __future__ import annotations

from medtransfer.data.sources import is_user_path
from medtransfer.errors import ConfigError


def is_segmentation(dataset: str) -> bool | None:
    """Whether a dataset holds masks to segment (True) or labels to classify (False); None when unknown."""
    if is_user_path(dataset):
        from medtransfer.data.segfolder import is_segmentation_folder

        return is_segmentation_folder(dataset)
    from medtransfer.data.base import DATASETS

    return DATASETS.get(dataset).card.task == "segmentation" if dataset in DATASETS else None


def wrong_kind(protocol: str, segmentation: bool | None) -> bool:
    """True when `protocol` cannot run on a dataset of that kind: segment needs masks, the rest class labels."""
    return segmentation is not None and (protocol == "segment") != segmentation


def check_protocol_fits(protocol: str, dataset: str) -> None:
    """Raise ConfigError (before any image is read) when `protocol` cannot run on `dataset`'s kind of labels."""
    if not wrong_kind(protocol, is_segmentation(dataset)):
        return
    if protocol == "segment":
        raise ConfigError(f"Dataset {dataset!r} has class labels, not segmentation masks: segment needs a "
                          "segmentation dataset (drive, phantom-seg-organs, a folder of images/ and masks/ ...).")
    raise ConfigError(f"Dataset {dataset!r} is a segmentation dataset (masks, no class labels): {protocol} needs "
                      f"class labels. Evaluate it with `medtransfer eval segment`.")
